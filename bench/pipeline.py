"""End to end: messages/s from webhook to the reply at the fake gateway, one worker process.

The bridge (`zapvet bridge`) and one worker process (zapvet.queue.entry's wiring with a
zero-latency ScriptedChatModel; bench/_serve.py) run as separate processes; this process
plays K customers, each posting a webhook and waiting for its reply at the fake Evolution
gateway before writing again (closed loop, debounce 0 so no turn waits). Over the measured
window it reports: messages/s and turn latency; CPU seconds of bridge + worker per message
(psutil, process and children); SQL statements per message (counted in both processes by
wrapping psycopg's Cursor/AsyncCursor execute: SQLAlchemy's statements, advisory locks and
pool pre-pings; BEGIN/COMMIT are not statements there, so transactions come from
`pg_stat_database.xact_commit`); Redis commands per message (`INFO commandstats` delta,
which counts the commands Dramatiq's Lua scripts run as well as the EVALSHA calls).
Baseline: a no-op Dramatiq actor on the same broker, same thread count and prefetch, with
the queue filled first (msgs/s between the first message taken and the last acknowledged).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
import uvloop

from bench._harness import (
    API_KEY,
    INSTANCE,
    Child,
    apply_org,
    child_env,
    clear_namespace,
    fmt,
    free_port,
    machine,
    note,
    percentile,
    pg_counters,
    print_machine,
    redis_calls,
    redis_delta,
    scratch_database,
    serve_command,
    services,
    snapshot,
    stop_on_sigterm,
    table,
    wait_http,
    workdir,
)
from bench._loadgen import Connection, Contacts, Webhooks
from bench._serve import NOOP_QUEUE, noop_actor
from zapvet.config import load_settings
from zapvet.queue.broker import build_broker
from zapvet.testing.gateways import FakeEvolutionAPI, SentText

#: DESIGN §9 targets: end to end with a zero-latency model; CPU per message beyond the graph.
TARGET_MPS = 250.0
PATH = f"/webhooks/evolution/{INSTANCE}"
#: A hang guard, not a measurement: a loaded 2-core VM answered 64 customers in ~30 s a round.
REPLY_TIMEOUT_S = 600.0


def _key(number: str) -> str:
    """The last 8 digits: the same person whatever the ninth digit or JID suffix."""
    return re.sub(r"\D", "", number.split("@")[0])[-8:]


class Replies:
    """Routes the gateway's sends (on its thread) to the customer waiting for them."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._lock = threading.Lock()

    def expect(self, number: str) -> asyncio.Future[float]:
        assert self.loop is not None
        future: asyncio.Future[float] = self.loop.create_future()
        with self._lock:
            self._waiting[_key(number)] = future
        return future

    def on_send(self, sent: SentText) -> None:
        at = time.perf_counter()
        with self._lock:
            future = self._waiting.pop(_key(sent.chat_id), None)
        if future is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(_resolve, future, at)


def _resolve(future: asyncio.Future[float], at: float) -> None:
    if not future.done():
        future.set_result(at)


@dataclass
class Window:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.latencies)


async def _customer(
    index: int, port: int, webhooks: Webhooks, replies: Replies, window: Window, until: float
) -> None:
    connection = Connection(port)
    phone = webhooks.contacts.phones[index]
    try:
        while time.perf_counter() < until:
            waiting = replies.expect(phone)
            started = time.perf_counter()
            status = await connection.post(PATH, webhooks.body(index))
            if status != 200:
                raise RuntimeError(f"the bridge answered {status}")
            answered = await asyncio.wait_for(waiting, timeout=REPLY_TIMEOUT_S)
            window.latencies.append(answered - started)
    finally:
        await connection.close()


async def _play(
    port: int, webhooks: Webhooks, replies: Replies, customers: int, seconds: float
) -> Window:
    replies.loop = asyncio.get_running_loop()
    window = Window()
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(
        *(_customer(i, port, webhooks, replies, window, until) for i in range(customers))
    )
    window.seconds = time.perf_counter() - started
    return window


@dataclass
class Noop:
    rate: float
    cpu_us: float
    messages: int


def baseline(redis_url: str, namespace: str, threads: int, messages: int, work: Path) -> Noop:
    """A no-op actor on the same broker: enqueue `messages`, then time the worker."""
    broker = build_broker(redis_url, namespace=namespace)
    actor = noop_actor(broker)
    for index in range(messages):
        actor.send(index)
    client = redis.Redis.from_url(redis_url)
    queue, acked = f"{namespace}:{NOOP_QUEUE}", f"{namespace}:{NOOP_QUEUE}.msgs"
    stats = work / "noop"
    stats.mkdir()
    env = child_env(REDIS_URL=redis_url, ZAPVET_QUEUE_NAMESPACE=namespace)
    command = serve_command("noop-worker", "--threads", str(threads), "--stats-dir", str(stats))
    child = Child(command, env=env, log=work / "noop.log").start()
    try:
        while client.llen(queue) >= messages:
            if not child.alive():
                raise RuntimeError("the no-op worker exited")
            time.sleep(0.002)
        started, cpu = time.perf_counter(), child.cpu_seconds()
        while client.hlen(acked) > 0:
            time.sleep(0.002)
        seconds, cpu = time.perf_counter() - started, child.cpu_seconds() - cpu
    finally:
        child.stop()
        client.close()
        broker.client.close()
    return Noop(rate=messages / seconds, cpu_us=cpu / messages * 1e6, messages=messages)


@dataclass
class Result:
    window: Window
    cpu_bridge: float
    cpu_worker: float
    statements: dict[str, int]
    transactions: int
    redis: dict[str, int]


def measure(
    database_url: str,
    redis_url: str,
    namespace: str,
    *,
    threads: int,
    customers: int,
    seconds: float,
    warmup: float,
    work: Path,
    workers: int = 1,
) -> Result:
    """One run: the bridge and `workers` worker processes (each `threads` threads)."""
    replies = Replies()
    gateway = FakeEvolutionAPI(api_key=API_KEY, instances=[INSTANCE], on_send=replies.on_send)
    gateway.start()
    apply_org(database_url, api_url=gateway.base_url, debounce_seconds=0)
    env = child_env(
        DATABASE_URL=database_url, REDIS_URL=redis_url, ZAPVET_QUEUE_NAMESPACE=namespace
    )
    port = free_port()
    children: dict[str, Child] = {}
    names = ["bridge", *(f"worker{n}" for n in range(1, workers + 1))]
    dirs = {name: work / f"{name}-of-{workers}" for name in names}
    for path in dirs.values():
        path.mkdir()
    client = redis.Redis.from_url(redis_url)
    try:
        for name in names[1:]:
            children[name] = Child(
                serve_command("worker", "--threads", str(threads), "--stats-dir", str(dirs[name])),
                env=env,
                log=work / f"{name}-of-{workers}.log",
            ).start()
        children["bridge"] = Child(
            serve_command("bridge", "--port", str(port), "--stats-dir", str(dirs["bridge"])),
            env=env,
            log=work / "bridge.log",
        ).start()
        wait_http(f"http://127.0.0.1:{port}/healthz", child=children["bridge"])
        webhooks = Webhooks(Contacts(customers), run=f"{namespace[-6:]}W{workers}")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_play(port, webhooks, replies, customers, warmup))
            before = {name: snapshot(dirs[name], "a") for name in dirs}
            cpu = {name: child.cpu_seconds() for name, child in children.items()}
            commands, pg = redis_calls(client), pg_counters(database_url)
            window = runner.run(_play(port, webhooks, replies, customers, seconds))
            time.sleep(0.2)  # the last sends are marked sent after the gateway answered
            after = {name: snapshot(dirs[name], "b") for name in dirs}
            used = {name: child.cpu_seconds() - cpu[name] for name, child in children.items()}
            commands = redis_delta(commands, redis_calls(client))
            pg_after = pg_counters(database_url)
    finally:
        for child in children.values():
            child.stop()
        gateway.stop()
        client.close()
    statements = {n: after[n]["statements"] - before[n]["statements"] for n in dirs}
    return Result(
        window=window,
        cpu_bridge=used.pop("bridge"),
        cpu_worker=sum(used.values()),
        statements={
            "bridge": statements.pop("bridge"),
            "worker": sum(statements.values()),
        },
        transactions=pg_after["xact_commit"] - pg["xact_commit"],
        redis=commands,
    )


def report(result: Result, noop: Noop, threads: int, customers: int) -> None:
    w = result.window
    n = max(w.count, 1)
    rate = w.count / w.seconds
    cpu_ms = (result.cpu_bridge + result.cpu_worker) / n * 1000
    total_redis = sum(result.redis.values())
    table(
        f"Pipeline: one worker process (-p 1 -t {threads}, prefetch {threads}), "
        f"{customers} customers in a closed loop, zero-latency model",
        ["figure", "value", "ratio"],
        [
            ["no-op actor, same broker (baseline)", f"{fmt(noop.rate)} msgs/s", "1.00"],
            ["end to end (webhook → reply at gateway)", f"{fmt(rate)} msgs/s",
             f"**{rate / noop.rate:.3f}** of no-op; {rate / TARGET_MPS:.2f} of target 250"],
            ["messages in the window", f"{w.count} in {w.seconds:.1f} s", ""],
            ["turn latency p50 / p99", f"{percentile(w.latencies, 50) * 1000:.0f} / "
             f"{percentile(w.latencies, 99) * 1000:.0f} ms", ""],
            ["CPU per message, bridge + worker", f"{cpu_ms:.2f} ms",
             f"{cpu_ms * 1000 / noop.cpu_us:.0f}× a no-op job ({noop.cpu_us:.0f} µs)"],
            ["  of which bridge / worker", f"{result.cpu_bridge / n * 1000:.2f} / "
             f"{result.cpu_worker / n * 1000:.2f} ms", ""],
            ["SQL statements per message (bridge / worker)",
             f"{sum(result.statements.values()) / n:.1f} "
             f"({result.statements['bridge'] / n:.1f} / {result.statements['worker'] / n:.1f})",
             ""],
            ["PostgreSQL transactions per message (xact_commit)",
             f"{result.transactions / n:.1f}", ""],
            ["Redis commands per message (commandstats)", f"{total_redis / n:.1f}",
             f"of which EVALSHA {result.redis.get('evalsha', 0) / n:.1f}"],
        ],
    )  # fmt: skip
    top = Counter(result.redis).most_common()
    note(
        "Redis commands per message: "
        + ", ".join(f"{k} {v / n:.1f}" for k, v in top if v / n >= 0.05)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="8 s window, 3 s warm-up")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=8.0, help="warm-up seconds")
    parser.add_argument("--customers", type=int, default=64, help="conversations in flight")
    parser.add_argument(
        "--threads", type=int, default=None, help="worker threads (default: the CLI's default)"
    )
    parser.add_argument("--noop-messages", type=int, default=20000, help="baseline messages")
    parser.add_argument(
        "--scale-out",
        action="store_true",
        help="also measure two worker processes, same run, and report the ratio to one",
    )
    parser.add_argument("--no-machine", action="store_true", help="do not print machine info")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    if args.quick:
        args.seconds, args.warmup, args.noop_messages = 8.0, 3.0, 5000
    threads = args.threads or load_settings().worker_threads
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    with (
        services() as urls,
        scratch_database(urls.database_url, "pipeline") as database_url,
        workdir() as tmp,
    ):
        if not args.no_machine:
            print_machine(machine(urls))
        work = Path(tmp)
        noop = baseline(urls.redis_url, namespace, threads, args.noop_messages, work)

        def run(workers: int) -> Result:
            return measure(
                database_url,
                urls.redis_url,
                namespace,
                threads=threads,
                customers=args.customers,
                seconds=args.seconds,
                warmup=args.warmup,
                work=work,
                workers=workers,
            )

        result = run(1)
        report(result, noop, threads, args.customers)
        if args.scale_out:
            report_scale_out(result, run(2), args.customers)
        clear_namespace(urls.redis_url, namespace)


def report_scale_out(one: Result, two: Result, customers: int) -> None:
    rates = [r.window.count / r.window.seconds for r in (one, two)]
    rows = [
        [
            str(workers),
            f"{fmt(rate)} msgs/s",
            f"**{rate / rates[0]:.2f}**",
            f"{(r.cpu_bridge + r.cpu_worker) / max(r.window.count, 1) * 1000:.2f} ms",
            f"{percentile(r.window.latencies, 50) * 1000:.0f} ms",
        ]
        for workers, rate, r in zip((1, 2), rates, (one, two), strict=True)
    ]
    table(
        f"Scale-out: worker processes on this machine, {customers} customers, same run",
        ["worker processes", "end to end", "÷ one worker", "CPU per message", "turn p50"],
        rows,
    )
    note(
        "Both runs share this machine's cores with the bridge, PostgreSQL, Redis and the "
        "load generator: a second process can add throughput only where the first left a "
        "core idle; on more machines each process brings its own cores."
    )


if __name__ == "__main__":
    main()
