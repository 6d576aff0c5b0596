"""`zapvet contact`: one person's standing with an organization (block, unblock)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zapvet.cli.environment import fail, in_organization

contact_app = typer.Typer(
    help="Contacts of an organization: stop or resume answering a number; export or erase "
    "what is stored about a person (LGPD).",
    no_args_is_help=True,
)

Phone = Annotated[
    str,
    typer.Argument(
        help='The number in any usual form: "+55 11 98888-7777", "11 8888-7777" '
        "(with or without the ninth digit).",
        show_default=False,
    ),
]
Org = Annotated[str, typer.Option("--org", help="The organization's slug.", show_default=False)]


def _phone(raw: str) -> str:
    from zapvet.commands.blocking import parse_phone

    try:
        return parse_phone(raw)
    except ValueError as exc:
        fail(f"{raw!r} is {exc}", "write it with its area code, e.g. +55 11 98888-7777", 2)


def _set_blocked(raw: str, slug: str, *, blocked: bool) -> None:
    from zapvet.clock import system_clock
    from zapvet.commands.blocking import Actor, OwnerNumberRefused, set_blocked

    phone = _phone(raw)

    async def work(session: Any, org_id: int) -> Any:
        return await set_blocked(
            session, org_id, phone, blocked=blocked, actor=Actor("cli"), now=system_clock()
        )

    try:
        done = in_organization(slug, work)
    except OwnerNumberRefused:
        fail(
            f"+{phone} is an owner number of {slug!r}: it talks to Aurora and cannot be blocked",
            "remove it from [[owners]] in the organization file first",
        )
    who = f"+{phone}" + (f" ({done.contact.name})" if done.contact and done.contact.name else "")
    if blocked and done.created:
        typer.echo(f"blocked {who} in {slug!r}: a new contact; nothing they send will be answered")
    elif blocked and done.changed:
        typer.echo(f"blocked {who} in {slug!r}: their messages are kept and never answered")
    elif blocked:
        typer.echo(f"{who} was already blocked in {slug!r} (no change)")
    elif done.changed:
        typer.echo(f"unblocked {who} in {slug!r}: their next messages will be answered")
    elif done.contact is None:
        typer.echo(f"{who} was not blocked in {slug!r}: no contact has that number (no change)")
    else:
        typer.echo(f"{who} was not blocked in {slug!r} (no change)")


@contact_app.command("block")
def contact_block(phone: Phone, org: Org) -> None:
    """Stop answering PHONE: its messages are still stored, never answered.

    A number that never wrote becomes a blocked contact: its first message goes unanswered.

    Blocking twice changes nothing. Owner numbers cannot be blocked.
    """
    _set_blocked(phone, org, blocked=True)


@contact_app.command("unblock")
def contact_unblock(phone: Phone, org: Org) -> None:
    """Answer PHONE again, from its next message on.

    What it sent while blocked stays stored and unanswered. Unblocking twice changes nothing.
    """
    _set_blocked(phone, org, blocked=False)


@contact_app.command("export")
def contact_export(
    phone: Phone,
    org: Org,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the JSON here instead of to standard output."),
    ] = None,
) -> None:
    """Everything stored about PHONE (LGPD: the right of access), as one JSON document:
    contact, pets, appointments, conversations and messages with transcripts, AI turns,
    proactive messages, pending owner actions and audit rows that name them."""
    import json

    from zapvet.commands.privacy import export_contact

    number = _phone(phone)
    document = in_organization(org, lambda session, org_id: export_contact(session, org_id, number))
    if document is None:
        fail(f"nothing is stored about +{number} in {org!r}", "check the number", 1)
    text = json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote everything stored about +{number} in {org!r} to {out}", err=True)


@contact_app.command("forget")
def contact_forget(phone: Phone, org: Org) -> None:
    """Erase PHONE's personal data (LGPD: the right to erasure): name, number, identities,
    message contents and transcripts, pet names and notes. Appointments, prices and dates stay
    (under a pseudonym), so past figures do not change. Recorded in the audit log. The same
    number writing again starts as a new contact. Forgetting twice changes nothing more."""
    from zapvet.clock import system_clock
    from zapvet.commands.blocking import Actor
    from zapvet.commands.privacy import forget_contact

    number = _phone(phone)

    async def work(session: Any, org_id: int) -> Any:
        return await forget_contact(session, org_id, number, actor=Actor("cli"), now=system_clock())

    counts = in_organization(org, work)
    if counts is None:
        typer.echo(f"nothing is stored about +{number} in {org!r} (no change)")
        return
    rows = ", ".join(f"{table} {n}" for table, n in sorted(counts.items()) if n)
    typer.echo(f"forgot +{number} in {org!r}: personal data erased ({rows})")
