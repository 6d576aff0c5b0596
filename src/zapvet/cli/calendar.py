"""`zapvet calendar`: the agenda as a read-only iCalendar feed (rotate, list)."""

from __future__ import annotations

from typing import Annotated

import typer

from zapvet.cli.environment import command_settings, fail, services_for

calendar_app = typer.Typer(
    help="The agenda as a calendar feed (.ics) for Google Calendar or a phone.",
    no_args_is_help=True,
)

Org = Annotated[str, typer.Option("--org", help="The organization's slug.", show_default=False)]


@calendar_app.command("rotate")
def rotate(
    org: Org,
    resource: Annotated[
        str | None,
        typer.Option(
            "--resource",
            help="One resource's agenda (its name in [[resources]]); default: the whole shop's.",
            show_default=False,
        ),
    ] = None,
    base_url: Annotated[
        str,
        typer.Option(
            "--base-url",
            help="Where the bridge is reached from outside (printed in front of the path).",
        ),
    ] = "http://127.0.0.1:8000",
) -> None:
    """Make the feed's URL, replacing (and cutting off) the previous one. The URL is shown
    once: keep it, or rotate again."""
    import asyncio

    from sqlmodel import select

    from zapvet import db
    from zapvet.models import Organization
    from zapvet.scheduling.calendar import Rotated
    from zapvet.scheduling.calendar import rotate as rotate_feed

    settings = command_settings()

    async def run(url: str) -> Rotated | str:
        engine = db.build_async_engine(url, pool_size=1)
        try:
            async with db.async_session_maker(engine)() as session, session.begin():
                org_id = (
                    await session.exec(select(Organization.id).where(Organization.slug == org))
                ).first()
                if org_id is None:
                    return f"no organization {org!r}"
                done = await rotate_feed(session, org_id, resource)
                return done if done is not None else f"no resource {resource!r} in {org!r}"
        finally:
            await engine.dispose()

    with services_for(settings) as services:
        done = asyncio.run(run(services.database_url))
    if isinstance(done, str):
        fail(done, "check the names, or apply the organization file with `zapvet org apply`")
    scope = f"{done.resource}'s agenda" if done.resource else "the whole agenda"
    typer.echo(f"{base_url.rstrip('/')}/calendar/{done.token}.ics")
    typer.echo(
        f"calendar feed of {org} ({scope}): subscribe to this URL (Google Calendar: "
        "Other calendars → From URL); the previous URL no longer works",
        err=True,
    )


@calendar_app.command("list")
def list_feeds(org: Org) -> None:
    """The organization's feeds (their URLs are only shown when made)."""
    import asyncio
    from datetime import datetime

    from sqlmodel import select

    from zapvet import db
    from zapvet.models import Organization
    from zapvet.scheduling.calendar import feeds

    settings = command_settings()

    async def run(url: str) -> list[tuple[str | None, datetime]] | None:
        engine = db.build_async_engine(url, pool_size=1)
        try:
            async with db.async_session_maker(engine)() as session:
                org_id = (
                    await session.exec(select(Organization.id).where(Organization.slug == org))
                ).first()
                return None if org_id is None else await feeds(session, org_id)
        finally:
            await engine.dispose()

    with services_for(settings) as services:
        found = asyncio.run(run(services.database_url))
    if found is None:
        fail(f"no organization {org!r}", "check the slug")
    if not found:
        typer.echo(
            f"{org} has no calendar feed: make one with `zapvet calendar rotate --org {org}`"
        )
    for resource, created in found:
        typer.echo(f"{resource or '(whole agenda)'}\tmade {created:%Y-%m-%d %H:%M %Z}")
