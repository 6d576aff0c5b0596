"""Fault injection around the real pipeline: worker processes, the scheduler, restartable
servers, a gateway that can go away, and a ledger that counts lost and doubled answers.

Shared by `tests/faults/` and `bench/faults.py`. Every customer text is unique and the echo
model answers each turn with the texts it addressed, so each sent reply says which
messages it answers: a text answered twice is a duplicate, one never answered is lost.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, text

from zapvet import db
from zapvet.embedded import EmbeddedPostgres, EmbeddedRedis
from zapvet.queue.broker import QUEUES
from zapvet.queue.drain import Enqueue
from zapvet.queue.scheduler import SWEEP_AFTER, TickReport, tick
from zapvet.runtime import run_scheduler
from zapvet.testing.gateways import FakeEvolutionAPI, SentText
from zapvet.testing.openai_server import Reply
from zapvet.testing.stack import INSTANCE, LocalStack

REPO = Path(__file__).resolve().parents[2]
ECHO = "Recebi: "
#: The worker entry of production, and one whose model kills its process on POISON.
ENTRY = "zapvet.queue.entry"
CRASHING_ENTRY = "tests.faults.crashing_entry"
POISON = "☠"


def unique_text(label: str) -> str:
    """A customer text no other message in the run shares."""
    return f"{label}-{uuid.uuid4().hex[:6]}"


def echo_reply(body: dict[str, Any]) -> Reply:
    """FakeOpenAIServer responder: echo this turn's customer texts (after the last system
    message, where the per-turn context prompt sits)."""
    messages = body["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "system")
    texts = [str(m["content"]) for m in messages[last + 1 :] if m["role"] == "user"]
    return Reply(text=ECHO + " | ".join(texts))


# -- processes ------------------------------------------------------------------------------


@dataclass
class Workers:
    """`dramatiq` worker processes on a stack's queues, each in its own process group."""

    stack: LocalStack
    model_url: str
    entry: str = ENTRY
    threads: int = 4
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: Where the workers' logs go (discarded by default).
    log: Any = None

    def spawn(self) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DATABASE_URL": self.stack.database_url,
            "REDIS_URL": self.stack.redis_url,
            "ZAPVET_QUEUE_NAMESPACE": self.stack.namespace,
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": self.model_url,
            "ZAPVET_LOG_FORMAT": "json",
            "ZAPVET_WORKER_THREADS": str(self.threads),
            "dramatiq_worker_timeout": "100",
            "dramatiq_queue_prefetch": str(self.threads),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **self.env,
        }
        command = [
            sys.executable, "-m", "dramatiq", self.entry,
            "--processes", "1", "--threads", str(self.threads), "--queues", *QUEUES,
            "--skip-logging", "--worker-shutdown-timeout", "5000",
        ]  # fmt: skip
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=REPO,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=self.log if self.log is not None else subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [proc for proc in self.procs if proc.poll() is None]

    def dead(self) -> int:
        """How many spawned worker processes have exited (crashed or killed)."""
        return sum(proc.poll() is not None for proc in self.procs)

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker's whole group: no shutdown hook, no ack, no unlock."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.alive():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


class Scheduler:
    """The real scheduler loop (leader lock, sweeper) in a thread of its own."""

    def __init__(self, stack: LocalStack, *, interval_s: float = 1.0) -> None:
        self.stack = stack
        self.interval_s = interval_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="zapvet-scheduler", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await run_scheduler(
                self.stack.database_url,
                self.stack.redis_url,
                stop=self._stop,
                namespace=self.stack.namespace,
                interval_s=self.interval_s,
                clock=self.stack.clock,
            )

        asyncio.run(main())

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


def sweep(database_url: str, enqueue: Enqueue) -> TickReport:
    """One scheduler tick, as if SWEEP_AFTER had passed since the messages arrived."""

    async def run() -> TickReport:
        engine = db.build_async_engine(database_url, pool_size=2)
        try:
            now = datetime.now(UTC) + SWEEP_AFTER + timedelta(seconds=1)
            return await tick(db.async_session_maker(engine), enqueue, now)
        finally:
            await engine.dispose()

    return asyncio.run(run())


# -- servers --------------------------------------------------------------------------------


class PrivateRedis(EmbeddedRedis):
    """An embedded Redis of one's own, to stop and restart (empty) under a running pipeline."""

    def restart_empty(self, *, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.forget()
        self.start()

    def forget(self) -> None:
        """Delete the persisted data, so the next start has nothing (a lost Redis)."""
        shutil.rmtree(self.root / "appendonlydir", ignore_errors=True)
        (self.root / "dump.rdb").unlink(missing_ok=True)


class PrivatePostgres(EmbeddedPostgres):
    """An embedded PostgreSQL cluster of one's own, migrated, to restart under the pipeline."""

    def start_migrated(self) -> str:
        self.start()
        url = self.url()
        db.upgrade(url)
        return url


# -- the gateway ----------------------------------------------------------------------------


def gateway_outage(gateway: FakeEvolutionAPI) -> Callable[[], None]:
    """Take the gateway off the network (connections refused); call the result to bring it
    back on the same port (a stopped fake keeps its port), with everything it recorded."""
    gateway.stop()
    return gateway.start


# -- the customers --------------------------------------------------------------------------


def post_until_accepted(
    stack: LocalStack,
    payload: dict[str, Any],
    *,
    deadline_s: float = 120.0,
    on_status: Callable[[int], None] | None = None,
) -> list[int]:
    """POST a webhook as a gateway does: again after a 5xx or no answer, until a 2xx.

    Returns every status seen (connection failures as 0), each also given to `on_status`.
    """
    url = f"{stack.bridge_url}/webhooks/evolution/{INSTANCE}"
    headers = {"X-Webhook-Token": "hook-secret"}
    seen: list[int] = []
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            status = httpx.post(url, json=payload, headers=headers, timeout=30).status_code
        except httpx.HTTPError:
            status = 0
        seen.append(status)
        if on_status is not None:
            on_status(status)
        if 200 <= status < 300:
            return seen
        if status and status < 500:
            raise AssertionError(f"the bridge refused a good webhook with {status}")
        if time.monotonic() > give_up:
            raise TimeoutError(f"the bridge never accepted the webhook: {seen}")
        time.sleep(0.2)


# -- the ledger -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """What happened to the messages of a run."""

    sent: int
    lost: int
    duplicates: int
    unrecordable: int
    pending: int

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicates <= self.unrecordable


def answers(sent: Iterable[SentText]) -> Counter[str]:
    """How many sent replies answered each customer text (echo replies only)."""
    counts: Counter[str] = Counter()
    for reply in sent:
        if reply.text.startswith(ECHO):
            counts.update(reply.text.removeprefix(ECHO).split(" | "))
    return counts


def recorded_ids(engine: Engine) -> set[str]:
    """Every provider id the database knows an outgoing message by."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT whatsapp_message_id FROM messages WHERE direction='outgoing' "
                "AND whatsapp_message_id IS NOT NULL UNION "
                "SELECT jsonb_array_elements_text(meta->'provider_ids') FROM messages "
                "WHERE direction='outgoing' AND meta ? 'provider_ids'"
            )
        )
        return {str(row[0]) for row in found}


def scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar() or 0)


def pending_work(engine: Engine) -> int:
    """Incoming rows still to answer plus outbox rows still to send."""
    return scalar(
        engine,
        "SELECT count(*) FROM messages WHERE status IN ('pending', 'sending')",
    )


def tally(engine: Engine, gateway: FakeEvolutionAPI, texts: Iterable[str]) -> Tally:
    """Count lost and doubled answers to `texts`, and accepted sends the database lacks."""
    texts = list(texts)
    counts = answers(gateway.sent)
    with engine.connect() as conn:
        stored = {
            str(row[0])
            for row in conn.execute(text("SELECT content FROM messages WHERE direction='incoming'"))
        }
    known = recorded_ids(engine)
    return Tally(
        sent=len(texts),
        lost=sum(1 for t in texts if t not in stored or counts[t] == 0),
        duplicates=sum(max(0, counts[t] - 1) for t in texts),
        unrecordable=sum(1 for s in gateway.sent if s.provider_id not in known),
        pending=pending_work(engine),
    )


def wait_for(
    done: Callable[[], bool], *, timeout: float = 60.0, what: str = "", every: float = 0.1
) -> float:
    """Poll `done` until true; the seconds it took. A hang guard, never a timing assert."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"gave up waiting for {what or 'the pipeline'}")
        time.sleep(every)
    return time.monotonic() - start
