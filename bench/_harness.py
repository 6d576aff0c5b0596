"""What every benchmark shares: services, a scratch database holding the example organization,
child processes (optionally pinned to a core) with their CPU time and counters, Redis
command counts, percentiles, machine facts and the tables the benchmarks print."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import psutil
import redis
from sqlmodel import Session

from zapvet import db
from zapvet.config import load_settings, normalise_database_url
from zapvet.embedded import ServiceUrls, running_services
from zapvet.org import apply_spec, parse_spec
from zapvet.org.spec import LimitsSection

REPO = Path(__file__).resolve().parents[1]
ORG = REPO / "examples" / "petfeliz.toml"
#: The Evolution instance and its secrets, as examples/petfeliz.toml declares them.
INSTANCE, WEBHOOK_TOKEN, API_KEY = "petfeliz", "hook-secret", "evo-secret"
#: With 2 cores the server under test gets core 0 and the load generator core 1.
SERVER_CPU, CLIENT_CPU = 0, 1
DEFAULT_DATA_DIR = "/tmp/zapvet-bench"


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so child processes and scratch databases are cleaned."""

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


@contextlib.contextmanager
def services() -> Iterator[ServiceUrls]:
    """DATABASE_URL / REDIS_URL when set, else private embedded servers (ZAPVET_DATA_DIR,
    default /tmp/zapvet-bench) that no other process on the machine shares."""
    overrides: dict[str, Any] = {}
    if not os.environ.get("ZAPVET_DATA_DIR"):
        overrides["data_dir"] = Path(DEFAULT_DATA_DIR)
    settings = load_settings(**overrides)
    with running_services(settings) as urls:
        yield urls


@contextlib.contextmanager
def scratch_database(server_url: str, label: str) -> Iterator[str]:
    """A migrated database of its own for one benchmark, dropped afterwards."""
    with db.scratch_database(server_url, f"zapvet_bench_{label}_{os.getpid()}") as url:
        yield url


def apply_org(
    database_url: str,
    *,
    api_url: str,
    debounce_seconds: int | None = None,
    slug: str | None = None,
    name: str | None = None,
    instance: str | None = None,
    webhook_token: str | None = None,
) -> int:
    """Apply examples/petfeliz.toml with the gateway at `api_url`; returns the organization id.

    `slug`, `name`, `instance` and `webhook_token` make it another organization (a benchmark
    with several shops applies the file once per shop)."""
    spec = parse_spec(ORG.read_text(encoding="utf-8"))
    instance_changes: dict[str, Any] = {"api_url": api_url}
    if instance is not None:
        instance_changes["instance"] = instance
    if webhook_token is not None:
        instance_changes["webhook_token"] = webhook_token
    whatsapp = [w.model_copy(update=instance_changes) for w in spec.whatsapp]
    ai = spec.ai
    if debounce_seconds is not None:
        ai = ai.model_copy(update={"debounce_seconds": debounce_seconds})
    organization = spec.organization
    if slug is not None or name is not None:
        organization = organization.model_copy(
            update={"slug": slug or organization.slug, "name": name or organization.name}
        )
    # A closed loop writes ~50 messages a minute per customer: far past a person's pace, so
    # `[limits]` would (rightly) hold it back. The benchmarks measure the pipeline, not them.
    unlimited = LimitsSection(
        contact_messages_per_minute=1000,
        contact_messages_per_day=100_000,
        org_turns_per_minute=100_000,
        bot_loop_exchanges=0,  # a closed-loop customer answers at once, as a bot does
    )
    spec = spec.model_copy(
        update={"whatsapp": whatsapp, "ai": ai, "organization": organization, "limits": unlimited}
    )
    engine = db.build_engine(database_url, pool_size=1)
    try:
        with Session(engine) as session:
            organization_id = apply_spec(session, spec).organization_id
            session.commit()
    finally:
        engine.dispose()
    return organization_id


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A scratch directory for logs and counters; kept (and named) if the benchmark fails."""
    path = Path(tempfile.mkdtemp(prefix="zapvet-bench-"))
    try:
        yield path
    except BaseException:
        sys.stderr.write(f"benchmark failed: server logs kept in {path}\n")
        raise
    shutil.rmtree(path, ignore_errors=True)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a server process: tracing off, JSON logs as in the container."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"OTEL_SDK_DISABLED": "true", "ZAPVET_LOG_FORMAT": "json", **extra})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


class Child:
    """A server process started by a benchmark; its CPU time includes its children's."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str],
        cpu: int | None = None,
        log: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.env = env
        self.cpu = cpu
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        pin = self.cpu

        def affinity() -> None:
            if pin is not None:
                os.sched_setaffinity(0, {pin})

        out = self.log.open("ab") if self.log is not None else None
        try:
            self.process = subprocess.Popen(
                self.command, env=self.env, preexec_fn=affinity, stdout=out, stderr=out
            )
        finally:
            if out is not None:
                out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and every live child, in seconds."""
        try:
            root = psutil.Process(self.pid)
            total = 0.0
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
            return total
        except psutil.Error:
            return 0.0

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds (by PID, this child only)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve_command(role: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "bench._serve", role, *args]


def wait_http(url: str, *, timeout: float = 60.0, child: Child | None = None) -> None:
    """Poll `url` until it answers 200.

    Raises:
        RuntimeError: the child died or the URL did not answer in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(
                f"{child.command} exited with {child.process and child.process.poll()}"
            )
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def snapshot(stats_dir: Path, name: str, *, timeout: float = 10.0) -> dict[str, int]:
    """Ask a `bench._serve` process for its counters (it polls `stats_dir/request`)."""
    answer = stats_dir / f"{name}.json"
    answer.unlink(missing_ok=True)
    tmp = stats_dir / "request.tmp"
    tmp.write_text(name)
    tmp.rename(stats_dir / "request")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answer.exists():
            with contextlib.suppress(ValueError):
                counts: dict[str, int] = json.loads(answer.read_text())
                return counts
        time.sleep(0.01)
    raise RuntimeError(f"no counters from {stats_dir} for {name}")


def redis_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per Redis command since the server started (`INFO commandstats`)."""
    stats: dict[str, Any] = client.info("commandstats")
    return {
        key.removeprefix("cmdstat_"): int(value["calls"])
        for key, value in stats.items()
        if isinstance(value, dict)
    }


def redis_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Calls per command between two `redis_calls`, leaving out the benchmark's own INFO."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {k: v for k, v in sorted(delta.items()) if v > 0 and k != "info"}


def clear_namespace(redis_url: str, namespace: str) -> None:
    """Delete a benchmark's Redis keys (its queues, metrics and poison-guard counters)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(f"{namespace}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def pg_counters(database_url: str) -> dict[str, int]:
    """Transactions and row counts of this database from `pg_stat_database`."""
    import psycopg

    sql = (
        "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, "
        "tup_updated, tup_deleted FROM pg_stat_database WHERE datname = current_database()"
    )
    with psycopg.connect(db.libpq_url(database_url), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(sql).fetchone()
    names = ["xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted"]
    names += ["tup_updated", "tup_deleted"]
    return dict(zip(names, [int(v) for v in row or ()], strict=True))


class _Sampler:
    """Calls `sample` every `every` seconds in a daemon thread while the block runs."""

    every = 0.1

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class RssPeak(_Sampler):
    """The peak resident memory of a process and its children, sampled every 100 ms."""

    def __init__(self, pid: Callable[[], int]) -> None:
        super().__init__()
        self._pid = pid
        self.peak_mb = 0.0

    def reset(self) -> None:
        self.peak_mb = 0.0

    def sample(self) -> None:
        try:
            root = psutil.Process(self._pid())
            rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        except (psutil.Error, OSError, ValueError):
            return  # between a worker's stop and its restart
        self.peak_mb = max(self.peak_mb, rss / 2**20)


class ConnectionPeak(_Sampler):
    """This database's connections (`pg_stat_activity`), sampled every 50 ms."""

    every = 0.05

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self._conninfo = db.libpq_url(database_url)
        self._conn: Any = None
        self.peak = 0

    def reset(self) -> None:
        self.peak = 0

    def sample(self) -> None:
        import psycopg

        if self._conn is None:  # opened in the sampling thread, used only there
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
        sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        row = self._conn.execute(sql).fetchone()
        self.peak = max(self.peak, int(row[0]) - 1 if row else 0)  # not this one

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        if self._conn is not None:
            self._conn.close()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (`q` in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _first_line(command: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
        return done.stdout.strip().splitlines()[0] if done.stdout.strip() else "?"
    return "?"


def machine(urls: ServiceUrls) -> dict[str, str]:
    """CPU, cores, load, Python, PostgreSQL and Redis versions, embedded or not."""
    import psycopg

    cpu = "?"
    with contextlib.suppress(OSError):
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = found.group(1).strip() if found else platform.processor() or "?"
    with psycopg.connect(db.libpq_url(urls.database_url), autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    client = redis.Redis.from_url(urls.redis_url)
    try:
        redis_version = str(client.info("server").get("redis_version", "?"))
    finally:
        client.close()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return {
        "cpu": f"{cpu} × {os.cpu_count()} cores",
        "kernel": platform.release(),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "python": platform.python_version(),
        "postgresql": f"{row[0] if row else '?'} ({_where(urls, 'postgres')})",
        "redis": f"{redis_version} ({_where(urls, 'redis')})",
        "load average (1, 5, 15 min)": load,
        "code": _first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
        "uvloop / httptools": _first_line(
            [
                sys.executable,
                "-c",
                "import uvloop, httptools; print(uvloop.__version__, httptools.__version__)",
            ]
        ),  # fmt: skip
        "wrk": "not used (the load generator is bench/_loadgen.py)"
        if shutil.which("wrk") is None
        else "installed, not used (the load generator is bench/_loadgen.py)",
    }


def _where(urls: ServiceUrls, name: str) -> str:
    if name in urls.embedded:
        return "embedded, private to the benchmark"
    return "external: " + _host(urls.database_url if name == "postgres" else urls.redis_url)


def _host(url: str) -> str:
    from sqlalchemy.engine import make_url

    with contextlib.suppress(Exception):
        parsed = make_url(normalise_database_url(url)) if "postgres" in url else None
        if parsed is not None:
            return f"{parsed.host or parsed.query.get('host', 'socket')}:{parsed.port or 5432}"
    return re.sub(r"//[^@/]*@", "//", url)


def print_machine(info: dict[str, str]) -> None:
    table("Machine", ["item", "value"], [[k, v] for k, v in info.items()])


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a Markdown table under a `### title` heading."""
    lines = [f"\n### {title}\n", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"
