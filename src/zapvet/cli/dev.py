"""`zapvet dev`: the whole system on one machine, for development.

Migrates, applies the organization file, and runs the bridge, a worker process and the
scheduler; replies to an instance whose gateway is local (the example's
http://127.0.0.1:8081) go to a built-in fake Evolution API that prints them. `zapvet chat`
then plays a phone against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from sqlmodel import Session

from zapvet import db
from zapvet.bridge.app import build_app
from zapvet.config import Settings
from zapvet.embedded import ServiceUrls
from zapvet.org import apply_spec, load_spec
from zapvet.org.spec import OrgSpec
from zapvet.queue.broker import QUEUES
from zapvet.runtime import bridge_state_factory, run_scheduler
from zapvet.serving import BackgroundServer
from zapvet.testing.gateways import FakeEvolutionAPI, SentText

Print = Callable[[str], None]

#: Seconds the worker gets to stop: its own shutdown timeout (30 s) and the exit after it.
WORKER_STOP_GRACE = 40.0


def _apply(database_url: str, spec: OrgSpec) -> None:
    engine = db.build_engine(database_url, pool_size=1)
    try:
        with Session(engine) as session:
            apply_spec(session, spec)
            session.commit()
    finally:
        engine.dispose()


def _local_gateway(spec: OrgSpec, say: Print) -> FakeEvolutionAPI | None:
    """A printing fake gateway for an Evolution instance configured on 127.0.0.1."""
    for entry in spec.whatsapp:
        address = urlsplit(entry.api_url or "")
        if entry.provider == "evolution" and address.hostname in {"127.0.0.1", "localhost"}:

            def show(sent: SentText) -> None:
                say(f"📤 to {sent.chat_id}: {sent.text}")

            return FakeEvolutionAPI(
                api_key=entry.api_key or "",
                instances=[entry.key],
                port=address.port or 80,
                on_send=show,
            )
    return None


def _worker(settings: Settings, services: ServiceUrls, threads: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": services.database_url,
        "REDIS_URL": services.redis_url,
        "ZAPVET_QUEUE_NAMESPACE": settings.queue_namespace,
        "ZAPVET_WORKER_THREADS": str(threads),
        "dramatiq_queue_prefetch": str(threads),
        "dramatiq_worker_timeout": "200",
    }
    command = [
        sys.executable, "-m", "dramatiq", "zapvet.queue.entry",
        "--processes", "1", "--threads", str(threads), "--queues", *QUEUES,
        "--worker-shutdown-timeout", "30000", "--skip-logging",
    ]  # fmt: skip
    # Its own process group: Ctrl-C reaches only `zapvet dev`, which stops the worker with one
    # SIGTERM, and a worker that does not stop in time is killed with all its processes.
    return subprocess.Popen(command, env=env, preexec_fn=_die_with_parent, process_group=0)


def _die_with_parent() -> None:
    """In the worker child: have Linux send it SIGTERM if `zapvet dev` dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the finally block in run_dev still stops the worker


def run_dev(
    settings: Settings,
    services: ServiceUrls,
    *,
    org_file: Path,
    port: int,
    say: Print,
    stop: threading.Event,
    threads: int = 16,
) -> None:
    """Run until `stop` is set (Ctrl-C), then stop everything it started."""
    db.upgrade(services.database_url)
    spec = load_spec(org_file)
    _apply(services.database_url, spec)
    # Spawned before any thread starts: the child's pre-exec hook must not run beside threads.
    worker = _worker(settings, services, threads)
    gateway = _local_gateway(spec, say)
    if gateway is not None:
        gateway.start()
    bridge = BackgroundServer(
        build_app(
            bridge_state_factory(
                services.database_url,
                services.redis_url,
                namespace=settings.queue_namespace,
                transcribe_model=settings.transcribe_model,
            )
        ),
        port=port,
        name="zapvet-bridge",
    )
    bridge.start()
    stop_scheduler = asyncio.Event()
    loop = asyncio.new_event_loop()
    scheduler = threading.Thread(
        target=loop.run_until_complete,
        args=(
            run_scheduler(
                services.database_url,
                services.redis_url,
                stop=stop_scheduler,
                namespace=settings.queue_namespace,
            ),
        ),
        name="zapvet-scheduler",
        daemon=True,
    )
    scheduler.start()
    for entry in spec.whatsapp:
        path = f"evolution/{entry.key}" if entry.provider == "evolution" else "cloud"
        header = "X-Webhook-Token" if entry.provider == "evolution" else "X-Hub-Signature-256"
        say(f"webhook ({entry.provider}): http://127.0.0.1:{port}/webhooks/{path} ({header})")
    say(f"try it: zapvet chat --org {spec.organization.slug}   (Ctrl-C here stops everything)")
    try:
        while not stop.wait(0.5):
            if worker.poll() is not None:
                say(f"the worker exited with status {worker.returncode}; stopping")
                break
    except KeyboardInterrupt:
        say("stopping: turns in flight finish first (Ctrl-C again kills the worker)")
        raise
    finally:
        _shutdown(worker, bridge, gateway, lambda: loop.call_soon_threadsafe(stop_scheduler.set))
        scheduler.join(timeout=30)


def _shutdown(
    worker: subprocess.Popen[bytes],
    bridge: BackgroundServer,
    gateway: FakeEvolutionAPI | None,
    stop_scheduler: Callable[[], object],
) -> None:
    """Stop every part, each independently of the others failing; the worker first."""
    steps: list[Callable[[], object]] = [lambda: stop_worker(worker), stop_scheduler, bridge.stop]
    if gateway is not None:
        steps.append(gateway.stop)
    for step in steps:
        with contextlib.suppress(Exception):  # keep stopping the rest
            step()


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """Stop the worker as a container runtime would: one SIGTERM, to dramatiq's parent only.

    The parent forwards it once to its worker process, which finishes its turns in flight.
    Never a second SIGTERM: dramatiq takes it as "kill now" and exits 1 mid-turn. A worker still
    running after WORKER_STOP_GRACE, or a second Ctrl-C (or SIGTERM) while it stops, has its whole
    process group killed instead, and this returns so the rest of dev still stops; the turns it
    abandons are answered later, as their drain's lock died with its connection.
    """
    worker.terminate()
    try:
        worker.wait(timeout=WORKER_STOP_GRACE)
    except (subprocess.TimeoutExpired, KeyboardInterrupt, SystemExit):
        _kill_group(worker)


def _kill_group(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL dramatiq and its worker processes: an orphaned worker would keep our stdout."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
