"""LLM-bound concurrency: replies/s and turn latency with a 2 s model, one worker process.

The worker is the real `zapvet worker --processes 1` with the container's settings (the
thread count docker-compose.yml passes, or the CLI default when a variant says so), its
model pointed at FakeOpenAIServer (latency 2 s) through OPENAI_BASE_URL; the bridge runs as
`zapvet bridge`. For 10, 100 and 500 conversations, each customer posts one webhook at the
same moment; a turn ends when its reply reaches the fake gateway. Peak concurrent model
requests come from FakeOpenAIServer.peak_in_flight. Baseline, same run: the same N requests
sent straight to the fake model server at once (what a perfectly concurrent worker gets).
Debounce is 0 (the example organization's 3 s would add 3 s to every turn).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvloop
import yaml

from bench._harness import (
    API_KEY,
    INSTANCE,
    REPO,
    Child,
    ConnectionPeak,
    RssPeak,
    apply_org,
    child_env,
    clear_namespace,
    fmt,
    free_port,
    machine,
    note,
    percentile,
    print_machine,
    scratch_database,
    serve_command,
    services,
    stop_on_sigterm,
    table,
    wait_http,
    workdir,
)
from bench._loadgen import Connection, Contacts, Webhooks
from bench.pipeline import Replies
from zapvet.config import load_settings
from zapvet.testing.gateways import FakeEvolutionAPI
from zapvet.testing.openai_server import FakeOpenAIServer, Reply

LATENCY_S = 2.0
#: DESIGN §9: LLM-bound turns in flight per worker process; issue #7's minimum.
TARGET_IN_FLIGHT, REQUIRED_IN_FLIGHT = 200, 50
PATH = f"/webhooks/evolution/{INSTANCE}"
REPLY_TEXT = "Oi! Aqui é a Pet Feliz 🐾 Como posso ajudar?"


def compose_threads() -> int | None:
    """The `--threads` docker-compose.yml gives the worker service (None: the CLI default)."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    command = [str(part) for part in compose["services"]["worker"]["command"]]
    return int(command[command.index("--threads") + 1]) if "--threads" in command else None


@dataclass
class Level:
    conversations: int
    seconds: float
    latencies: list[float]
    peak: int
    lost: int
    refused: int = 0
    connections: int = 0
    #: Peak resident memory of the worker process tree (the CLI and its Dramatiq process).
    rss_mb: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def _turn(
    index: int, port: int, webhooks: Webhooks, replies: Replies, timeout: float
) -> tuple[float | None, int]:
    """One customer's message; returns the turn's seconds (None: no reply in time) and how
    many times the bridge refused it first (retried after 1 s, as a gateway would)."""
    connection = Connection(port)
    waiting = replies.expect(webhooks.contacts.phones[index])
    started = time.perf_counter()
    body = webhooks.body(index)
    refused = 0
    try:
        while await connection.post(PATH, body) != 200:
            refused += 1
            if refused > 5:
                return None, refused
            await asyncio.sleep(1.0)
    finally:
        await connection.close()
    try:
        return await asyncio.wait_for(waiting, timeout=timeout) - started, refused
    except TimeoutError:
        return None, refused


def _reset_peak(model: FakeOpenAIServer) -> None:
    # FakeOpenAIServer keeps its peak for its lifetime; each level needs its own.
    with model._lock:
        model._peak_in_flight = model._in_flight


async def _level(
    first: int,
    count: int,
    port: int,
    webhooks: Webhooks,
    replies: Replies,
    model: FakeOpenAIServer,
    timeout: float,
) -> Level:
    replies.loop = asyncio.get_running_loop()
    _reset_peak(model)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_turn(first + i, port, webhooks, replies, timeout) for i in range(count))
    )
    latencies = [seconds for seconds, _ in results if seconds is not None]
    refused = sum(n for _, n in results)
    seconds = max(latencies) if latencies else time.perf_counter() - started
    return Level(count, seconds, latencies, model.peak_in_flight, count - len(latencies), refused)


async def _backlog(
    first: int,
    count: int,
    port: int,
    webhooks: Webhooks,
    replies: Replies,
    model: FakeOpenAIServer,
    start_worker: Callable[[], None],
    timeout: float,
) -> Level:
    """`count` messages stored while no worker runs, then one worker starts: the worker's own
    fan-out, without the bridge's ingest rate in the way. Times run from its first model call."""
    replies.loop = asyncio.get_running_loop()
    waiting = [replies.expect(webhooks.contacts.phones[first + i]) for i in range(count)]
    connection = Connection(port)
    try:
        for i in range(count):
            while await connection.post(PATH, webhooks.body(first + i)) != 200:
                await asyncio.sleep(1.0)
    finally:
        await connection.close()
    _reset_peak(model)
    asked = len(model.requests)
    start_worker()
    # Times run from the first model request: a worker's start-up (imports) is not a turn.
    while len(model.requests) == asked:
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    done = await asyncio.gather(
        *(asyncio.wait_for(w, timeout=timeout) for w in waiting), return_exceptions=True
    )
    latencies = [at - started for at in done if isinstance(at, float)]
    seconds = max(latencies) if latencies else time.perf_counter() - started
    return Level(count, seconds, latencies, model.peak_in_flight, count - len(latencies))


async def _direct(model: FakeOpenAIServer, count: int) -> Level:
    """The baseline: `count` chat completions sent straight to the fake model at once."""
    _reset_peak(model)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Oi"}]}
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=model.base_url, limits=limits, timeout=60) as client:

        async def one() -> float:
            started = time.perf_counter()
            response = await client.post("/chat/completions", json=body)
            response.raise_for_status()
            return time.perf_counter() - started

        started = time.perf_counter()
        latencies = await asyncio.gather(*(one() for _ in range(count)))
        seconds = time.perf_counter() - started
    return Level(count, seconds, list(latencies), model.peak_in_flight, 0)


@dataclass
class Variant:
    """One worker configuration's measurements, level by level."""

    live: list[Level]
    backlog: list[Level]
    direct: list[Level]


def run_variant(
    name: str,
    threads: int | None,
    *,
    database_url: str,
    redis_url: str,
    levels: list[int],
    work: Path,
    modes: tuple[str, ...] = ("live", "backlog"),
) -> Variant:
    """Start the bridge and `zapvet worker` (with `--threads threads` unless None) and play
    every level twice: live (customers post at once) and from a backlog."""
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    replies = Replies()
    gateway = FakeEvolutionAPI(api_key=API_KEY, instances=[INSTANCE], on_send=replies.on_send)
    model = FakeOpenAIServer(latency=LATENCY_S, responder=lambda _body: Reply(REPLY_TEXT))
    gateway.start()
    model.start()
    apply_org(database_url, api_url=gateway.base_url, debounce_seconds=0)
    env = child_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ZAPVET_QUEUE_NAMESPACE=namespace,
        OPENAI_API_KEY="sk-bench",
        OPENAI_BASE_URL=model.base_url,
    )
    port = free_port()
    stats = work / name
    stats.mkdir()
    worker_command = [sys.executable, "-m", "zapvet.cli", "worker", "--processes", "1"]
    if threads is not None:
        worker_command += ["--threads", str(threads)]
    workers = [Child(worker_command, env=env, log=work / f"{name}-worker.log")]
    bridge = Child(
        serve_command("bridge", "--port", str(port), "--stats-dir", str(stats)),
        env=env,
        log=work / f"{name}-bridge.log",
    )

    def restart_worker() -> None:
        workers[-1].stop(timeout=60)
        workers.append(Child(worker_command, env=env, log=work / f"{name}-worker.log").start())

    webhooks = Webhooks(Contacts(5 + 2 * sum(levels)), run=namespace[-6:])
    found = Variant([], [], [])
    try:
        workers[0].start()
        bridge.start()
        wait_http(f"http://127.0.0.1:{port}/healthz", child=bridge)
        with (
            asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
            ConnectionPeak(database_url) as connections,
            RssPeak(lambda: workers[-1].pid) as memory,
        ):
            # Warm-up: the worker connects, builds its graphs and its model client.
            runner.run(_level(0, 5, port, webhooks, replies, model, timeout=120))
            first = 5
            for count in levels:
                timeout = 60 + count * LATENCY_S
                found.direct.append(runner.run(_direct(model, count)))
                if "live" in modes:
                    connections.reset()
                    memory.reset()
                    live = runner.run(_level(first, count, port, webhooks, replies, model, timeout))
                    live.connections, live.rss_mb = connections.peak, memory.peak_mb
                    found.live.append(live)
                    first += count
                if "backlog" in modes:
                    workers[-1].stop(timeout=60)
                    connections.reset()
                    memory.reset()
                    backlog = runner.run(
                        _backlog(
                            first, count, port, webhooks, replies, model, restart_worker, timeout
                        )
                    )
                    backlog.connections, backlog.rss_mb = connections.peak, memory.peak_mb
                    found.backlog.append(backlog)
                    first += count
    finally:
        bridge.stop()
        for worker in workers:
            worker.stop(timeout=60)
        model.stop()
        gateway.stop()
        clear_namespace(redis_url, namespace)
    return found


def report(name: str, threads: int, found: Variant) -> None:
    rows = []
    for index, base in enumerate(found.direct):
        for mode, runs in (("live", found.live), ("backlog", found.backlog)):
            if index >= len(runs):
                continue
            level = runs[index]
            rows.append(
                [
                    f"{level.conversations} {mode}",
                    fmt(base.rate, 1),
                    fmt(level.rate, 1),
                    f"**{level.rate / base.rate:.2f}**" if base.rate else "-",
                    f"{percentile(level.latencies, 50):.2f} / "
                    f"{percentile(level.latencies, 99):.2f}",
                    level.peak,
                    f"{level.peak / TARGET_IN_FLIGHT:.2f}",
                    level.connections,
                    f"{level.rss_mb:.0f}",
                    f"{level.lost} / {level.refused}",
                ]
            )
    table(
        f"Concurrency, {name}: one worker process × {threads} threads, model latency "
        f"{LATENCY_S:.0f} s",
        [
            "conversations",
            "direct-to-model replies/s (baseline)",
            "pipeline replies/s",
            "pipeline ÷ baseline",
            "turn p50 / p99 s",
            "peak model requests in flight",
            f"peak ÷ target {TARGET_IN_FLIGHT}",
            "peak PG connections",
            "peak worker RSS MB",
            "unanswered / bridge non-200 (retried)",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.concurrency", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="10 and 100 conversations only")
    parser.add_argument("--levels", default="10,100,500", help="comma-separated conversations")
    parser.add_argument(
        "--variants",
        default="compose,cli",
        help="compose: docker-compose.yml's --threads; cli: `zapvet worker` with no --threads; "
        "or a number of threads",
    )
    parser.add_argument(
        "--modes", default="live,backlog", help="live (customers post at once), backlog, or both"
    )
    parser.add_argument("--no-machine", action="store_true", help="do not print machine info")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    modes = tuple(args.modes.split(","))
    levels = [10, 100] if args.quick else [int(v) for v in args.levels.split(",")]
    default_threads = load_settings().worker_threads
    variants: list[tuple[str, int | None, int]] = []
    for variant in args.variants.split(","):
        if variant == "compose":
            threads = compose_threads()
            label = f"docker-compose.yml (--threads {threads or 'default'})"
            variants.append((label, threads, threads or default_threads))
        elif variant == "cli":
            variants.append(("`zapvet worker` defaults", None, default_threads))
        else:
            variants.append((f"--threads {variant}", int(variant), int(variant)))
    with (
        services() as urls,
        scratch_database(urls.database_url, "concurrency") as database_url,
        workdir() as tmp,
    ):
        if not args.no_machine:
            print_machine(machine(urls))
        summary: list[list[Any]] = []
        for index, (label, threads, effective) in enumerate(variants):
            found = run_variant(
                f"v{index}",
                threads,
                database_url=database_url,
                redis_url=urls.redis_url,
                levels=levels,
                work=Path(tmp),
                modes=modes,
            )
            report(label, effective, found)
            peak = max(level.peak for level in found.live + found.backlog)
            verdict = "meets" if peak >= REQUIRED_IN_FLIGHT else "**fails**"
            summary.append([label, effective, peak, f"{verdict} ≥ {REQUIRED_IN_FLIGHT}"])
        table(
            "Concurrency: peak turns in flight per worker process",
            ["variant", "threads", "peak", "issue #7 minimum"],
            summary,
        )
        note(
            f"live: every customer posts at once, times from the post to the reply. backlog: "
            f"the N messages are stored first, then one worker starts; times from its first "
            f"model request. "
            f"Baseline: the same N requests sent straight to FakeOpenAIServer (latency "
            f"{LATENCY_S:.0f} s) at once. Debounce 0. Target {TARGET_IN_FLIGHT} = DESIGN §9."
        )


if __name__ == "__main__":
    main()
