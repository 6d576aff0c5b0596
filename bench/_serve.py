"""The server processes the benchmarks start: `python -m bench._serve ROLE [options]`.

Roles: `bare` (a FastAPI endpoint that reads the body and returns 200, served like the
bridge), `bridge` (the real `zapvet bridge` command), `worker` (the real worker wiring of
zapvet.queue.entry with a zero-latency scripted model instead of ChatOpenAI) and
`noop-worker` (a no-op actor on the same broker). Every role counts the SQL statements
its psycopg cursors execute; a benchmark asks for them by writing a name to
`<stats-dir>/request`, answered in `<stats-dir>/<name>.json` (bench._harness.snapshot).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

COUNTS: dict[str, int] = {"statements": 0}
NOOP_QUEUE = "bench_noop"
REPLY = "Oi! Aqui é a Pet Feliz 🐾 Como posso ajudar você e seu pet hoje?"


def count_statements() -> None:
    """Count every statement psycopg sends (SQLAlchemy's, advisory locks, pre-pings)."""
    import psycopg

    for cls in (psycopg.Cursor, psycopg.AsyncCursor):
        for name in ("execute", "executemany"):
            # Returning the original's result as is works for both: async callers await it.
            def counted(
                self: Any, *args: Any, _original: Any = getattr(cls, name), **kw: Any
            ) -> Any:
                COUNTS["statements"] += 1
                return _original(self, *args, **kw)

            setattr(cls, name, counted)


def answer_snapshots(stats_dir: Path) -> None:
    """Answer counter requests from a daemon thread (polling one path: cheap, and works
    under any event loop)."""
    request = stats_dir / "request"

    def loop() -> None:
        while True:
            if request.exists():
                name = request.read_text().strip()
                if name:
                    tmp = stats_dir / f"{name}.tmp"
                    tmp.write_text(json.dumps(COUNTS))
                    tmp.rename(stats_dir / f"{name}.json")
                    request.unlink(missing_ok=True)
            time.sleep(0.02)

    threading.Thread(target=loop, name="bench-counters", daemon=True).start()


def serve_bare(port: int) -> None:
    import uvicorn

    app = FastAPI(docs_url=None, redoc_url=None)

    @app.post("/webhooks/evolution/{instance}")
    async def hook(request: Request, instance: str) -> dict[str, bool]:  # noqa: ARG001
        await request.json()
        return {"ok": True}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # The same call as `zapvet bridge`.
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_config=None, loop="uvloop")


def serve_bridge(port: int) -> None:
    from zapvet.cli import bridge

    bridge(host="127.0.0.1", port=port)


def _wait_for_sigterm() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(0.2)


def serve_worker(threads: int, ready: Path) -> None:
    """zapvet.queue.entry's wiring, with ScriptedChatModel answering every call at once."""
    import dramatiq
    from langchain_core.messages import AIMessage

    from zapvet.config import load_settings
    from zapvet.llm.scripted import ScriptedChatModel
    from zapvet.logging import setup_logging
    from zapvet.queue.actors import ResourceHolder, declare
    from zapvet.queue.broker import QUEUES, build_broker
    from zapvet.queue.middleware import Lifecycle
    from zapvet.queue.resources import build_resources

    settings = load_settings()
    setup_logging(settings)
    assert settings.database_url is not None and settings.redis_url is not None
    database_url = settings.database_url
    # Usage as a provider reports it, so that the fake model does not run tiktoken over every
    # prompt: a real model's token counts cost the worker nothing.
    usage = {"input_tokens": 2400, "output_tokens": 24, "total_tokens": 2424}
    model = ScriptedChatModel(
        responder=lambda _messages: AIMessage(REPLY, usage_metadata=usage)  # type: ignore[arg-type]
    )
    broker = build_broker(settings.redis_url, namespace=settings.queue_namespace)
    dramatiq.set_broker(broker)
    holder = ResourceHolder(
        # The pool as zapvet.queue.entry sizes it (min(threads, DB_POOL_LIMIT = 32) + 4).
        lambda: build_resources(database_url, lambda: model, pool_size=min(threads, 32) + 4)
    )
    broker.add_middleware(Lifecycle(holder.close))
    declare(broker, holder.get)
    worker = dramatiq.Worker(broker, queues=set(QUEUES), worker_threads=threads)
    worker.start()
    ready.touch()
    _wait_for_sigterm()
    worker.stop()


def serve_noop_worker(threads: int, ready: Path) -> None:
    import dramatiq

    from zapvet.config import load_settings
    from zapvet.queue.broker import build_broker

    settings = load_settings()
    assert settings.redis_url is not None
    broker = build_broker(settings.redis_url, namespace=settings.queue_namespace)
    noop_actor(broker)
    worker = dramatiq.Worker(broker, queues={NOOP_QUEUE}, worker_threads=threads)
    worker.start()
    ready.touch()
    _wait_for_sigterm()
    worker.stop()


def noop_actor(broker: Any) -> Any:
    """The baseline actor: declared the same way in the worker and the producer."""
    import dramatiq

    def noop(index: int) -> None:  # noqa: ARG001
        return None

    return dramatiq.actor(broker=broker, actor_name="noop", queue_name=NOOP_QUEUE, max_retries=0)(
        noop
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["bare", "bridge", "worker", "noop-worker"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--stats-dir", type=Path, required=True)
    args = parser.parse_args()
    if args.role in ("worker", "noop-worker"):
        # Dramatiq reads this when dramatiq.worker is imported; `zapvet worker` sets it too.
        os.environ["dramatiq_queue_prefetch"] = str(args.threads)  # noqa: SIM112
    count_statements()
    answer_snapshots(args.stats_dir)
    ready = args.stats_dir / f"{args.role}.ready"
    if args.role == "bare":
        serve_bare(args.port)
    elif args.role == "bridge":
        serve_bridge(args.port)
    elif args.role == "worker":
        serve_worker(args.threads, ready)
    else:
        serve_noop_worker(args.threads, ready)


if __name__ == "__main__":
    main()
