"""`zapvet contact`: one person's standing with an organization (block, unblock)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zapvet.cli.environment import command_settings, fail, services_for

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
    import asyncio

    from sqlmodel import select

    from zapvet import db
    from zapvet.clock import system_clock
    from zapvet.commands.blocking import Actor, BlockResult, OwnerNumberRefused, set_blocked
    from zapvet.models import Organization

    phone = _phone(raw)
    settings = command_settings()

    async def run(url: str) -> tuple[int | None, BlockResult | None]:
        engine = db.build_async_engine(url, pool_size=1)
        try:
            async with db.async_session_maker(engine)() as session, session.begin():
                org_id = (
                    await session.exec(select(Organization.id).where(Organization.slug == slug))
                ).first()
                if org_id is None:
                    return None, None
                done = await set_blocked(
                    session, org_id, phone, blocked=blocked, actor=Actor("cli"),
                    now=system_clock(),
                )  # fmt: skip
                return org_id, done
        finally:
            await engine.dispose()

    with services_for(settings) as services:
        try:
            org_id, done = asyncio.run(run(services.database_url))
        except OwnerNumberRefused:
            fail(
                f"+{phone} is an owner number of {slug!r}: it talks to Aurora and cannot be "
                "blocked",
                "remove it from [[owners]] in the organization file first",
            )
    if org_id is None or done is None:
        fail(
            f"no organization {slug!r}", "check the slug, or apply its file with `zapvet org apply`"
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


def _in_org(slug: str, work: Any) -> Any:
    """Run `work(session, org_id)` in one transaction of the organization `slug`; the string
    `"no organization"` when there is none."""
    import asyncio

    from sqlmodel import select

    from zapvet import db
    from zapvet.models import Organization

    settings = command_settings()

    async def run(url: str) -> Any:
        engine = db.build_async_engine(url, pool_size=1)
        try:
            async with db.async_session_maker(engine)() as session, session.begin():
                org_id = (
                    await session.exec(select(Organization.id).where(Organization.slug == slug))
                ).first()
                return _NO_ORG if org_id is None else await work(session, org_id)
        finally:
            await engine.dispose()

    with services_for(settings) as services:
        done = asyncio.run(run(services.database_url))
    if done is _NO_ORG:
        fail(
            f"no organization {slug!r}", "check the slug, or apply its file with `zapvet org apply`"
        )
    return done


_NO_ORG = object()


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
    document = _in_org(org, lambda session, org_id: export_contact(session, org_id, number))
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

    counts = _in_org(org, work)
    if counts is None:
        typer.echo(f"nothing is stored about +{number} in {org!r} (no change)")
        return
    rows = ", ".join(f"{table} {n}" for table, n in sorted(counts.items()) if n)
    typer.echo(f"forgot +{number} in {org!r}: personal data erased ({rows})")
