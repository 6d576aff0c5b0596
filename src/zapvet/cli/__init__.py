"""The `zapvet` command line: entrypoints that wire settings, services and modules together."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx
import typer

from zapvet import __version__
from zapvet.config import Settings, load_settings
from zapvet.embedded import ServiceUrls, running_services
from zapvet.errors import ConfigError, EmbeddedServiceError, OrgFileError, ZapvetError

app = typer.Typer(
    name="zapvet",
    help="WhatsApp attendant for pet shops and veterinary clinics.\n\n"
    "Settings come from the environment and from ./.env (see .env.example).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
org_app = typer.Typer(
    help="Organizations: create or update them from TOML files.", no_args_is_help=True
)
dlq_app = typer.Typer(
    help="The dead-letter queue: messages that failed every retry.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(org_app, name="org")
app.add_typer(dlq_app, name="dlq")


def _fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    if hint:
        typer.echo(f"  → {hint}", err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    """The settings, with logging set up: warnings only, redacted unless capture is on.

    Long-running commands raise the level to INFO with another `setup_logging` call.
    """
    from zapvet.logging import setup_logging

    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc), "fix or unset that variable (in the environment or in .env)", 2)
    setup_logging(settings, level=logging.WARNING)
    return settings


@contextmanager
def _services(settings: Settings) -> Iterator[ServiceUrls]:
    try:
        with running_services(settings) as services:
            yield services
    except EmbeddedServiceError as exc:
        _fail(str(exc), "set DATABASE_URL / REDIS_URL to use servers of your own")


def redact_url(url: str) -> str:
    """`url` without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zapvet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """WhatsApp attendant for pet shops and veterinary clinics."""


# -- database -------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Run the database migrations up to the newest revision (or REVISION)."""
    from zapvet import db

    settings = _settings()
    with _services(settings) as services:
        engine = db.build_engine(services.database_url, pool_size=1)
        try:
            before = db.current_revision(engine)
            db.upgrade(services.database_url, revision)
            after = db.current_revision(engine)
        finally:
            engine.dispose()
    if before == after:
        typer.echo(f"database already at revision {after} (head)")
    else:
        typer.echo(f"database migrated: {before or 'empty'} → {after}")


@db_app.command("current")
def db_current() -> None:
    """Print the revision the database is at, and the newest one available."""
    from zapvet import db

    with _services(_settings()) as services:
        engine = db.build_engine(services.database_url, pool_size=1)
        try:
            current = db.current_revision(engine)
        finally:
            engine.dispose()
    head = db.head_revision()
    state = "up to date" if current == head else "run `zapvet db upgrade`"
    typer.echo(f"database at {current or 'empty'}; newest is {head} ({state})")


# -- organizations --------------------------------------------------------------------------


@org_app.command("apply")
def org_apply(
    file: Annotated[
        Path, typer.Argument(help="Organization file (TOML), e.g. examples/petfeliz.toml.")
    ],
) -> None:
    """Create or update an organization from FILE. Idempotent: applying twice changes nothing."""
    from zapvet import db
    from zapvet.org import apply_spec, load_spec

    try:
        spec = load_spec(file)
    except OrgFileError as exc:
        _fail(str(exc), "fix the keys above and apply again; nothing was written")
    with _services(_settings()) as services:
        engine = db.build_engine(services.database_url, pool_size=1)
        try:
            _require_schema(engine)
            factory = db.session_maker(engine)
            try:
                with db.transaction(factory) as session:
                    report = apply_spec(session, spec)
            except OrgFileError as exc:
                _fail(str(OrgFileError(file, exc.problems)), "nothing was written")
        finally:
            engine.dispose()
    if not report.changes:
        typer.echo(f"organization {report.slug!r} is up to date (no changes)")
        return
    verb = "created" if report.created else "updated"
    typer.echo(f"organization {report.slug!r} {verb} (id {report.organization_id}):")
    for change in report.changes:
        typer.echo(f"  {change}")


def _require_schema(engine: object) -> None:
    from sqlalchemy import Engine

    from zapvet import db

    assert isinstance(engine, Engine)
    current, head = db.current_revision(engine), db.head_revision()
    if current != head:
        _fail(
            f"the database schema is at {current or 'nothing'}, not {head}",
            "run `zapvet db upgrade` first",
        )


# -- status ---------------------------------------------------------------------------------


@app.command("status")
def status(
    port: Annotated[int, typer.Option(help="Bridge port used to print webhook URLs.")] = 8080,
) -> None:
    """Show the database and Redis in use, the schema revision and the organizations."""
    import redis

    from zapvet import db
    from zapvet.org.summary import summarise

    settings = _settings()
    with _services(settings) as services:
        kind = dict.fromkeys(services.embedded, "embedded")
        typer.echo(
            f"PostgreSQL ({kind.get('postgres', 'external')}): {redact_url(services.database_url)}"
        )
        typer.echo(
            f"Redis      ({kind.get('redis', 'external')}): {redact_url(services.redis_url)}"
        )
        client = redis.Redis.from_url(services.redis_url, socket_timeout=5)
        try:
            info = client.info("server")
            typer.echo(f"  redis {info['redis_version']} answering")
        finally:
            client.close()
        engine = db.build_engine(services.database_url, pool_size=1)
        try:
            current, head = db.current_revision(engine), db.head_revision()
            typer.echo(f"  schema at {current or 'empty'} (newest {head})")
            if current != head:
                typer.echo("  → run `zapvet db upgrade`")
                return
            with db.session_maker(engine)() as session:
                summaries = summarise(session)
        finally:
            engine.dispose()
    if not summaries:
        typer.echo("no organizations yet → `zapvet org apply examples/petfeliz.toml`")
    for org in summaries:
        typer.echo(
            f"organization {org.slug!r}: {org.name} ({org.timezone}); {org.services} services, "
            f"{org.resources} resources, {org.owners} owner numbers"
        )
        for provider, instance in org.instances:
            path = f"evolution/{instance}" if provider == "evolution" else "cloud"
            typer.echo(f"  webhook ({provider}): http://127.0.0.1:{port}/webhooks/{path}")
    if services.embedded:
        typer.echo(
            f"embedded servers ({', '.join(services.embedded)}) stopped as this command ended"
        )


# -- running the system (later issues) ------------------------------------------------------


@app.command("dev")
def dev(
    port: Annotated[int, typer.Option(help="Bridge port.")] = 8080,
    org_file: Annotated[
        Path, typer.Option("--org-file", help="Organization file to apply first.")
    ] = Path("examples/petfeliz.toml"),
    threads: Annotated[int, typer.Option(help="Worker threads.")] = 16,
    phoenix: Annotated[
        bool, typer.Option("--phoenix", help="Also run Arize Phoenix and send traces to it.")
    ] = False,
) -> None:
    """Run everything locally: embedded services, migrations, bridge, worker and scheduler.

    Replies to an instance whose api_url is local (the example's http://127.0.0.1:8081) go
    to a built-in fake gateway that prints them. Needs OPENAI_API_KEY (any OpenAI-compatible
    endpoint via OPENAI_BASE_URL); `zapvet demo` runs offline instead. With --phoenix, every
    message's trace appears in Phoenix at http://127.0.0.1:6006 (installed separately).
    """
    import threading

    from zapvet.cli.dev import run_dev
    from zapvet.llm.openai import build_chat_model

    settings = _settings()
    try:
        build_chat_model(settings)
    except ConfigError as exc:
        _fail(str(exc), "set OPENAI_API_KEY, or run `zapvet demo` to see the pipeline offline", 2)
    stop = threading.Event()
    viewer = _trace_viewer(phoenix, log_level=logging.INFO)
    with viewer as settings, _services(settings) as services:
        kinds = ", ".join(services.embedded) or "none"
        typer.echo(f"services: {redact_url(services.database_url)} (embedded: {kinds})", err=True)
        try:
            run_dev(
                settings,
                services,
                org_file=org_file,
                port=port,
                say=typer.echo,
                stop=stop,
                threads=threads,
            )
        except KeyboardInterrupt:
            stop.set()
        except OrgFileError as exc:
            _fail(str(exc), "fix the organization file")


@contextmanager
def _trace_viewer(phoenix: bool, *, log_level: int = logging.WARNING) -> Iterator[Settings]:
    """Settings with logging and tracing set up for this process, exporting to Phoenix if
    asked."""
    from zapvet.logging import setup_logging
    from zapvet.otel.phoenix import PhoenixError, PhoenixServer
    from zapvet.otel.tracing import setup_tracing

    viewer = PhoenixServer()
    if phoenix:
        typer.echo("starting Phoenix (about 7 s)…", err=True)
        try:
            viewer.start()
        except PhoenixError as exc:
            _fail(str(exc))
        viewer.export_here()
        typer.echo(f"traces: {viewer.url} (project {viewer.project!r})", err=True)
    settings = _settings()
    setup_logging(settings, level=log_level)
    telemetry = setup_tracing(settings, "zapvet")
    try:
        yield settings
    finally:
        telemetry.shutdown()
        viewer.stop()


@app.command("demo")
def demo(
    phoenix: Annotated[
        bool,
        typer.Option("--phoenix", help="Send the traces to Arize Phoenix and keep it open."),
    ] = False,
) -> None:
    """Replay the Rex booking conversation offline through the real pipeline.

    Webhooks over HTTP, Redis queue, Dramatiq worker, PostgreSQL (a scratch database), the
    client graph with the Rex scenario's scripted model, and a local fake WhatsApp gateway.
    Prints the transcript, the time per stage, the rows written and the last message's trace
    tree (recorded in memory; no OTEL_* variable needed). With --phoenix, Phoenix shows one
    trace per message afterwards, until Ctrl-C.
    """
    import threading

    from zapvet.cli.demo import run_demo
    from zapvet.otel.tree import recording_spans

    with _trace_viewer(phoenix) as settings, recording_spans(settings) as spans:
        with _services(settings) as services:
            try:
                result = run_demo(services.database_url, services.redis_url, typer.echo, spans)
            except FileNotFoundError as exc:
                _fail(str(exc))
        typer.echo(
            "\nTime per stage (ms): webhook → stored · waiting (debounce + queue) · turn · send"
        )
        for index, stage in enumerate(result.stages, start=1):
            typer.echo(
                f"  message {index}: {stage.webhook:7.1f} · {stage.queued:7.1f} · "
                f"{stage.turn:7.1f} · {stage.send:7.1f}"
            )
        typer.echo("\nRows written:")
        for table, lines in result.rows.items():
            typer.echo(f"  {table}:")
            for line in lines:
                typer.echo(f"    {line}")
        if spans is None:
            typer.echo("\nNo trace tree: tracing is off (OTEL_SDK_DISABLED).")
        else:
            last = len(result.stages)
            typer.echo(f"\nTrace of message {last} (span names and durations, no content):")
            for line in result.trace_tree or ["(none sampled: see OTEL_TRACES_SAMPLER)"]:
                typer.echo(f"  {line}")
        if phoenix:
            from zapvet.otel.tracing import flush_spans

            flush_spans()
            typer.echo("\nTraces are in Phoenix at http://127.0.0.1:6006; Ctrl-C stops it.")
            with suppress(KeyboardInterrupt):
                threading.Event().wait()


@app.command("chat")
def chat(
    org: Annotated[str, typer.Option("--org", help="Organization slug.")],
    as_phone: Annotated[
        str | None,
        typer.Option("--as", help="Phone to write from (an owner number talks to Aurora)."),
    ] = None,
    bridge_url: Annotated[
        str, typer.Option("--bridge", help="The running bridge (zapvet dev).")
    ] = "http://127.0.0.1:8080",
) -> None:
    """Play a customer's (or, with --as, the owner's) phone against a running `zapvet dev`.

    Type a message and press Enter; replies appear as they are sent. Ctrl-D ends.
    """
    from zapvet.cli.chat import DEFAULT_PHONE, ChatError, find_line
    from zapvet.cli.chat import chat as run_chat

    settings = _settings()
    with _services(settings) as services:
        try:
            line = find_line(services.database_url, org)
        except ChatError as exc:
            _fail(
                str(exc), "start `zapvet dev` (it applies examples/petfeliz.toml) or apply an org"
            )
        phone = as_phone or DEFAULT_PHONE
        typer.echo(f"you are {phone} writing to {line.name}; Ctrl-D ends", err=True)
        try:
            run_chat(services.database_url, bridge_url, line, phone, sys.stdin, typer.echo)
        except httpx.ConnectError:
            _fail(f"no bridge at {bridge_url}", "start `zapvet dev` first")


@app.command("studio-context")
def studio_context(
    org: Annotated[str, typer.Option("--org", help="Organization slug.")],
    as_phone: Annotated[
        str | None,
        typer.Option("--as", help="Phone writing (an owner number gets Aurora's context)."),
    ] = None,
) -> None:
    """Print the JSON context for a LangGraph Studio run as a phone writing to an organization.

    Finds or creates the contact and its open conversation as a real message would; paste
    the output into Studio's context panel (see README "Debugging flows in LangGraph Studio").
    """
    import asyncio
    import json

    from zapvet.cli.chat import DEFAULT_PHONE
    from zapvet.cli.studio import StudioContextError
    from zapvet.cli.studio import studio_context as make_context

    settings = _settings()
    with _services(settings) as services:
        try:
            context = asyncio.run(
                make_context(services.database_url, org, as_phone or DEFAULT_PHONE)
            )
        except StudioContextError as exc:
            _fail(str(exc), "zapvet org apply examples/petfeliz.toml")
        except ValueError as exc:
            _fail(str(exc), 'write the phone as "+55 11 98888-7777"')
    graph = "aurora" if "owner_number_id" in context else "client"
    typer.echo(f"graph: {graph}", err=True)
    typer.echo(json.dumps(context))


@app.command("bridge")
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

    settings = _settings()
    setup_logging(settings)
    telemetry = setup_tracing(settings, "zapvet-bridge")
    with _services(settings) as services:
        factory = bridge_state_factory(
            services.database_url, services.redis_url, namespace=settings.queue_namespace
        )
        app = build_app(factory)
        typer.echo(
            f"bridge listening on http://{host}:{port} (webhooks under /webhooks/)", err=True
        )
        try:
            uvicorn.run(app, host=host, port=port, access_log=False, log_config=None, loop="uvloop")
        finally:
            telemetry.shutdown()


@app.command("worker")
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

    settings = _settings()
    try:
        build_chat_model(settings)
    except ConfigError as exc:
        _fail(str(exc), "set OPENAI_API_KEY (and OPENAI_BASE_URL for other providers)", 2)
    count = processes or settings.worker_processes
    width = threads or settings.worker_threads
    with _services(settings) as services:
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


@app.command("scheduler")
def scheduler(
    interval: Annotated[float, typer.Option(help="Seconds between ticks.")] = 5.0,
) -> None:
    """Run the scheduler: reminders, daily summaries, the stuck-message sweeper, DLQ trim."""
    import asyncio

    from zapvet.logging import setup_logging
    from zapvet.otel.tracing import setup_tracing
    from zapvet.runtime import run_scheduler

    settings = _settings()
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

    with _services(settings) as services:
        typer.echo(f"scheduler ticking every {interval:g} s", err=True)
        with suppress(KeyboardInterrupt):
            asyncio.run(main(services.database_url, services.redis_url))
        telemetry.shutdown()


@app.command("stats")
def stats(json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show queue depth (waiting, active, delayed, dead, failed last hour) and alerts."""
    import asyncio
    import json

    import redis.asyncio as aioredis

    from zapvet.queue.stats import queue_stats

    settings = _settings()

    async def read(url: str) -> Any:
        client = aioredis.Redis.from_url(url, socket_timeout=5)
        try:
            return await queue_stats(client, settings.queue_namespace)
        finally:
            await client.aclose()

    with _services(settings) as services:
        figures = asyncio.run(read(services.redis_url))
    if json_output:
        typer.echo(json.dumps(figures.as_json()))
        return
    typer.echo(
        f"waiting {figures.waiting} · active {figures.active} · delayed {figures.delayed} · "
        f"dead {figures.dead} · failed last hour {figures.failed_last_hour}"
    )
    for name, depth in figures.queues.items():
        typer.echo(
            f"  {name:<10} waiting {depth.waiting} active {depth.active} "
            f"delayed {depth.delayed} dead {depth.dead}"
        )
    for alert in figures.alerts:
        typer.secho(f"ALERT: {alert}", fg=typer.colors.YELLOW)
    if not figures.alerts:
        typer.echo("no alerts")


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="How many to show, newest first.")] = 50,
) -> None:
    """List dead-lettered messages."""
    from zapvet.queue import dlq
    from zapvet.queue.broker import redis_client

    settings = _settings()
    with _services(settings) as services:
        client = redis_client(services.redis_url)
        dead = dlq.list_dead(client, settings.queue_namespace, limit)
    if not dead:
        typer.echo("the dead-letter queue is empty")
    for item in dead:
        typer.echo(
            f"{item.message_id}  {item.died_at:%Y-%m-%d %H:%M:%S}Z  {item.queue}/{item.actor}"
            f"{tuple(item.args)}  retries={item.retries}  {item.error}"
        )


@dlq_app.command("requeue")
def dlq_requeue(
    ids: Annotated[list[str] | None, typer.Argument(help="Message ids (default: all).")] = None,
) -> None:
    """Put dead-lettered messages back on their queue with a fresh retry budget."""
    from zapvet.queue import dlq
    from zapvet.queue.broker import build_broker, redis_client

    settings = _settings()
    with _services(settings) as services:
        namespace = settings.queue_namespace
        broker = build_broker(services.redis_url, namespace=namespace)
        moved = dlq.requeue(broker, redis_client(services.redis_url), namespace, ids)
    typer.echo(f"requeued {moved} message(s)")


@app.command("eval")
def eval_(
    scenarios: Annotated[
        list[Path], typer.Argument(help="Scenario files (YAML) or directories of them.")
    ],
    model: Annotated[
        str, typer.Option(help="`scripted` (the scenarios' own model outputs) or `openai:MODEL`.")
    ] = "scripted",
    k: Annotated[int, typer.Option("-k", min=1, help="Runs per scenario (pass^k).")] = 1,
) -> None:
    """Run conversation scenarios on a scratch database and print a pass^k table.

    With a real model the scripted outputs are ignored and only each scenario's end state
    and facts are checked. Progress (run i of N, elapsed time) goes to stderr: a bar on a
    terminal, a line per run otherwise. Exits 1 unless every scenario passes all k runs.
    """
    from zapvet.evals.progress import eval_progress
    from zapvet.evals.report import render
    from zapvet.evals.runner import ModelFactory
    from zapvet.evals.scenario import ScenarioError, expand_paths, load_scenario
    from zapvet.evals.suite import evaluate
    from zapvet.llm.openai import build_chat_model

    files = expand_paths(scenarios)
    if not files:
        _fail(
            "no scenario files found", "pass YAML files or a directory such as scenarios/client", 2
        )
    try:
        loaded = [load_scenario(path) for path in files]
    except ScenarioError as exc:
        _fail(str(exc), "fix the scenario file", 2)
    settings = _settings()
    factory: ModelFactory | None = None
    if model != "scripted":
        provider, _, name = model.partition(":")
        if provider != "openai" or not name:
            _fail(f"unknown model {model!r}", "use --model scripted or --model openai:MODEL", 2)
        try:
            build_chat_model(settings, model=name)
        except ConfigError as exc:
            _fail(str(exc), "set OPENAI_API_KEY (and OPENAI_BASE_URL for other providers)", 2)

        def factory() -> Any:
            return build_chat_model(settings, model=name, temperature=None)

    with _services(settings) as services, eval_progress(len(loaded) * k, k) as progress:
        summaries = evaluate(
            loaded, services.database_url, k=k, model_factory=factory, progress=progress
        )
    typer.echo(render(summaries, k))
    if any(summary.pass_k < 1 for summary in summaries):
        raise typer.Exit(1)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Console-script entrypoint: SIGTERM unwinds like Ctrl-C so embedded servers stop."""
    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C too, even when started as a background job of a script: such jobs inherit SIGINT
    # ignored, and `zapvet dev` would then never stop on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        app()
    except ZapvetError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)
