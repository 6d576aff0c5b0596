"""Bridge ingest: webhooks/s the real bridge accepts (authenticate, parse, INSERT, enqueue).

The bridge (`zapvet bridge`: uvicorn with uvloop + httptools, no access log) runs in its own
process pinned to core 0; the load generator (bench/_loadgen.py, raw keep-alive HTTP/1.1 on
uvloop) runs in this process pinned to core 1; PostgreSQL and Redis are not pinned. Bodies
are Evolution API v2 `messages.upsert` webhooks with the instance's X-Webhook-Token, a new
message id each and contacts drawn from a skewed spread. The baseline is a bare FastAPI
endpoint that reads the JSON body and returns 200, served the same way, driven by the same
client in the same run. Every figure is reported against it and against DESIGN §9's target.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis
import uvloop

from bench._harness import (
    CLIENT_CPU,
    INSTANCE,
    SERVER_CPU,
    Child,
    apply_org,
    child_env,
    clear_namespace,
    fmt,
    free_port,
    machine,
    note,
    percentile,
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
from bench._loadgen import Contacts, Phase, Webhooks, load

#: DESIGN §9: bridge ingest at 16 connections.
TARGET_RPS = 2000.0
PATH = f"/webhooks/evolution/{INSTANCE}"


@dataclass
class Run:
    phase: Phase
    server_cpu_s: float
    statements: int = 0
    redis_calls: int = 0


def _measure(
    kind: str,
    *,
    database_url: str,
    redis_url: str,
    namespace: str,
    levels: list[int],
    seconds: float,
    warmup: float,
    webhooks: Webhooks,
    work: Path,
) -> dict[int, Run]:
    env = child_env(
        DATABASE_URL=database_url, REDIS_URL=redis_url, ZAPVET_QUEUE_NAMESPACE=namespace
    )
    port = free_port()
    stats = work / kind
    stats.mkdir()
    command = serve_command(kind, "--port", str(port), "--stats-dir", str(stats))
    child = Child(command, env=env, cpu=SERVER_CPU, log=work / f"{kind}.log").start()
    client = redis.Redis.from_url(redis_url)
    runs: dict[int, Run] = {}
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", child=child)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            for concurrency in levels:
                runner.run(load(port, PATH, webhooks.body, concurrency=concurrency, seconds=warmup))
                before, calls = snapshot(stats, f"a{concurrency}"), redis_calls(client)
                cpu = child.cpu_seconds()
                phase = runner.run(
                    load(port, PATH, webhooks.body, concurrency=concurrency, seconds=seconds)
                )
                cpu = child.cpu_seconds() - cpu
                after = snapshot(stats, f"b{concurrency}")
                used = redis_delta(calls, redis_calls(client))
                runs[concurrency] = Run(
                    phase,
                    cpu,
                    statements=after["statements"] - before["statements"],
                    redis_calls=sum(used.values()),
                )
    finally:
        child.stop()
        client.close()
    return runs


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def report(bare: dict[int, Run], bridge: dict[int, Run], seconds: float) -> None:
    rows = []
    for level in sorted(bridge):
        b, z = bare[level].phase, bridge[level].phase
        rows.append(
            [
                level,
                fmt(b.rate),
                f"{_ms(percentile(b.latencies, 50))} / {_ms(percentile(b.latencies, 99))}",
                fmt(z.rate),
                f"{_ms(percentile(z.latencies, 50))} / {_ms(percentile(z.latencies, 99))}",
                f"**{z.rate / b.rate:.2f}**" if b.rate else "-",
                f"{z.rate / TARGET_RPS:.2f}",
                fmt(bare[level].server_cpu_s / b.count * 1e6) if b.count else "-",
                fmt(bridge[level].server_cpu_s / z.count * 1e6) if z.count else "-",
                f"{bridge[level].statements / z.count:.1f}" if z.count else "-",
                f"{bridge[level].redis_calls / z.count:.1f}" if z.count else "-",
                f"{b.errors} / {z.errors}",
            ]
        )
    table(
        f"Ingest: webhooks/s accepted ({seconds:.0f} s per level)",
        [
            "senders",
            "bare req/s",
            "bare p50 / p99 ms",
            "bridge req/s",
            "bridge p50 / p99 ms",
            "bridge ÷ bare",
            "bridge ÷ target 2,000",
            "bare CPU µs/req",
            "bridge CPU µs/req",
            "SQL stmts/req",
            "Redis calls/req",
            "non-200 bare / bridge",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="3 s per level, 1 s warm-up")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per level")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated senders")
    parser.add_argument("--contacts", type=int, default=5000, help="distinct contacts")
    parser.add_argument("--no-machine", action="store_true", help="do not print machine info")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    if args.quick:
        args.seconds, args.warmup = 3.0, 1.0
    levels = [int(v) for v in args.concurrency.split(",")]
    os.sched_setaffinity(0, {CLIENT_CPU})
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    with (
        services() as urls,
        scratch_database(urls.database_url, "ingest") as database_url,
        workdir() as tmp,
    ):
        if not args.no_machine:
            print_machine(machine(urls))
        # No worker runs here: the gateway is never called, and queued drains are dropped.
        apply_org(database_url, api_url="http://127.0.0.1:9")
        webhooks = Webhooks(Contacts(args.contacts), run=namespace[-6:])

        def measure(kind: str) -> dict[int, Run]:
            return _measure(
                kind,
                database_url=database_url,
                redis_url=urls.redis_url,
                namespace=namespace,
                levels=levels,
                seconds=args.seconds,
                warmup=args.warmup,
                webhooks=webhooks,
                work=Path(tmp),
            )

        try:
            bare = measure("bare")
            bridge = measure("bridge")
        finally:
            clear_namespace(urls.redis_url, namespace)
        report(bare, bridge, args.seconds)
        note(
            "\nbridge: `zapvet bridge` in its own process on core 0; client: this process on "
            "core 1; PostgreSQL and Redis unpinned. Ratios: bridge ÷ bare FastAPI measured "
            "above; target = DESIGN §9 (≥ 2,000 req/s at 16 senders)."
        )


if __name__ == "__main__":
    main()
