"""The production processes: `bridge`, `worker` and `scheduler`."""

from __future__ import annotations

import sys
from contextlib import suppress
from typing import Annotated

import typer

from zapvet.cli.environment import command_settings, fail, services_for
from zapvet.errors import ConfigError


def bridge(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8080,
) -> None:
    """Run the webhook bridge (FastAPI on uvicorn, uvloop + httptools, no access log)."""
    import uvicorn

    from zapvet.bridge.app import build_app
    from zapvet.logging import setup_logging
    from zapvet.otel.tracing import setup_tracing
    from zapvet.runtime import bridge_state_factory

    settings = command_settings()
    setup_logging(settings)
    telemetry = setup_tracing(settings, "zapvet-bridge")
    with services_for(settings) as services:
        factory = bridge_state_factory(
            services.database_url,
            services.redis_url,
            namespace=settings.queue_namespace,
            transcribe_model=settings.transcribe_model,
        )
        app = build_app(factory)
        typer.echo(
            f"bridge listening on http://{host}:{port} (webhooks under /webhooks/)", err=True
        )
        try:
            uvicorn.run(app, host=host, port=port, access_log=False, log_config=None, loop="uvloop")
        finally:
            telemetry.shutdown()


def worker(
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            envvar="ZAPVET_WORKER_PROCESSES",
            help="Worker processes (default 1; the variable is also read from .env).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            envvar="ZAPVET_WORKER_THREADS",
            help="Threads per process (default 256; the variable is also read from .env).",
        ),
    ] = None,
    shutdown_timeout: Annotated[
        int, typer.Option(help="Seconds a stopping worker waits for turns in flight.")
    ] = 150,
) -> None:
    """Run the Dramatiq worker: drains conversations, sends replies and proactive messages.

    Concurrency is processes × threads (each LLM turn in flight holds a thread). Give the
    container a stop grace period longer than --shutdown-timeout.
    """
    import os
    import subprocess

    from zapvet.llm.openai import build_chat_model
    from zapvet.queue.broker import QUEUES

    settings = command_settings()
    try:
        build_chat_model(settings)
    except ConfigError as exc:
        fail(str(exc), "set OPENAI_API_KEY (and OPENAI_BASE_URL for other providers)", 2)
    count = processes or settings.worker_processes
    width = threads or settings.worker_threads
    with services_for(settings) as services:
        env = {
            **os.environ,
            "DATABASE_URL": services.database_url,
            "REDIS_URL": services.redis_url,
            "ZAPVET_WORKER_THREADS": str(width),
            "ZAPVET_QUEUE_NAMESPACE": settings.queue_namespace,
            "dramatiq_queue_prefetch": str(width),
        }
        command = [
            sys.executable, "-m", "dramatiq", "zapvet.queue.entry",
            "--processes", str(count), "--threads", str(width), "--queues", *QUEUES,
            "--worker-shutdown-timeout", str(shutdown_timeout * 1000), "--skip-logging",
        ]  # fmt: skip
        typer.echo(f"worker: {count} process(es) × {width} threads", err=True)
        if not services.embedded:
            os.execvpe(sys.executable, command, env)  # dramatiq becomes the process (PID 1)
        child = subprocess.Popen(command, env=env)
        try:
            raise typer.Exit(child.wait())
        finally:
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=shutdown_timeout + 10)


def scheduler(
    interval: Annotated[float, typer.Option(help="Seconds between ticks.")] = 5.0,
) -> None:
    """Run the scheduler: reminders, daily summaries, the stuck-message sweeper, DLQ trim."""
    import asyncio

    from zapvet.logging import setup_logging
    from zapvet.otel.tracing import setup_tracing
    from zapvet.runtime import run_scheduler

    settings = command_settings()
    setup_logging(settings)
    telemetry = setup_tracing(settings, "zapvet-scheduler")

    async def main(database_url: str, redis_url: str) -> None:
        stop = asyncio.Event()
        await run_scheduler(
            database_url,
            redis_url,
            stop=stop,
            interval_s=interval,
            namespace=settings.queue_namespace,
        )

    with services_for(settings) as services:
        typer.echo(f"scheduler ticking every {interval:g} s", err=True)
        with suppress(KeyboardInterrupt):
            asyncio.run(main(services.database_url, services.redis_url))
        telemetry.shutdown()
