"""Commands for one machine: `dev`, `demo`, `chat` and `studio-context`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated

import httpx
import typer

from zapvet.cli.environment import command_settings, fail, redact_url, services_for
from zapvet.config import Settings
from zapvet.errors import ConfigError, OrgFileError


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

    settings = command_settings()
    try:
        build_chat_model(settings)
    except ConfigError as exc:
        fail(str(exc), "set OPENAI_API_KEY, or run `zapvet demo` to see the pipeline offline", 2)
    stop = threading.Event()
    viewer = trace_viewer(phoenix, log_level=logging.INFO)
    with viewer as settings, services_for(settings) as services:
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
            fail(str(exc), "fix the organization file")


@contextmanager
def trace_viewer(phoenix: bool, *, log_level: int = logging.WARNING) -> Iterator[Settings]:
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
            fail(str(exc))
        viewer.export_here()
        typer.echo(f"traces: {viewer.url} (project {viewer.project!r})", err=True)
    settings = command_settings()
    setup_logging(settings, level=log_level)
    telemetry = setup_tracing(settings, "zapvet")
    try:
        yield settings
    finally:
        telemetry.shutdown()
        viewer.stop()


def demo(
    phoenix: Annotated[
        bool,
        typer.Option("--phoenix", help="Send the traces to Arize Phoenix and keep it open."),
    ] = False,
) -> None:
    """Replay the Rex booking conversation offline through the real pipeline.

    Webhooks over HTTP, Redis queue, Dramatiq worker, PostgreSQL (a scratch database), the
    client graph with the Rex scenario's scripted model, and a local fake WhatsApp gateway.
    The first message is a voice note, transcribed by a local fake OpenAI-compatible server.
    Prints the transcript, the time per stage, the rows written and the last message's trace
    tree (recorded in memory; no OTEL_* variable needed). With --phoenix, Phoenix shows one
    trace per message afterwards, until Ctrl-C.
    """
    import threading

    from zapvet.cli.demo import print_result, run_demo
    from zapvet.otel.tree import recording_spans

    with trace_viewer(phoenix) as settings, recording_spans(settings) as spans:
        with services_for(settings) as services:
            try:
                result = run_demo(services.database_url, services.redis_url, typer.echo, spans)
            except FileNotFoundError as exc:
                fail(str(exc))
        print_result(result, typer.echo, traced=spans is not None)
        if phoenix:
            from zapvet.otel.tracing import flush_spans

            flush_spans()
            typer.echo("\nTraces are in Phoenix at http://127.0.0.1:6006; Ctrl-C stops it.")
            with suppress(KeyboardInterrupt):
                threading.Event().wait()


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

    To send a file: `/audio PATH` (a voice note), `/image PATH caption` or
    `/document PATH caption` (the caption is optional; quote a PATH with spaces).
    """
    from zapvet.cli.chat import DEFAULT_PHONE, ChatError, find_line
    from zapvet.cli.chat import chat as run_chat

    settings = command_settings()
    with services_for(settings) as services:
        try:
            line = find_line(services.database_url, org)
        except ChatError as exc:
            fail(str(exc), "start `zapvet dev` (it applies examples/petfeliz.toml) or apply an org")
        phone = as_phone or DEFAULT_PHONE
        typer.echo(f"you are {phone} writing to {line.name}; Ctrl-D ends", err=True)
        typer.echo("files: /audio PATH, /image PATH [caption], /document PATH [caption]", err=True)
        try:
            run_chat(services.database_url, bridge_url, line, phone, sys.stdin, typer.echo)
        except httpx.ConnectError:
            fail(f"no bridge at {bridge_url}", "start `zapvet dev` first")


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

    settings = command_settings()
    with services_for(settings) as services:
        try:
            context = asyncio.run(
                make_context(services.database_url, org, as_phone or DEFAULT_PHONE)
            )
        except StudioContextError as exc:
            fail(str(exc), "zapvet org apply examples/petfeliz.toml")
        except ValueError as exc:
            fail(str(exc), 'write the phone as "+55 11 98888-7777"')
    graph = "aurora" if "owner_number_id" in context else "client"
    typer.echo(f"graph: {graph}", err=True)
    typer.echo(json.dumps(context))
