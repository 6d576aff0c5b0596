"""The `zapvet` command line: entrypoints that wire settings, services and modules together."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Annotated

import typer

from zapvet import __version__
from zapvet.cli.calendar import calendar_app
from zapvet.cli.contact import contact_app
from zapvet.cli.db import db_app
from zapvet.cli.eval import eval_
from zapvet.cli.local import chat, demo, dev, studio_context
from zapvet.cli.org import org_app
from zapvet.cli.queue import dlq_app, stats
from zapvet.cli.serve import bridge, scheduler, worker
from zapvet.cli.status import status
from zapvet.cli.webhooks import webhooks_app
from zapvet.errors import ZapvetError

__all__ = ["app", "bridge", "main"]

app = typer.Typer(
    name="zapvet",
    help="WhatsApp attendant for pet shops and veterinary clinics.\n\n"
    "Settings come from the environment and from ./.env (see .env.example).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db_app, name="db")
app.add_typer(org_app, name="org")
app.add_typer(dlq_app, name="dlq")
app.add_typer(contact_app, name="contact")
app.add_typer(calendar_app, name="calendar")
app.add_typer(webhooks_app, name="webhooks")
app.command("status")(status)
app.command("dev")(dev)
app.command("demo")(demo)
app.command("chat")(chat)
app.command("studio-context")(studio_context)
app.command("bridge")(bridge)
app.command("worker")(worker)
app.command("scheduler")(scheduler)
app.command("stats")(stats)
app.command("eval")(eval_)


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
