"""`zapvet calendar`: the agenda as a read-only iCalendar feed (rotate, list)."""

from __future__ import annotations

from typing import Annotated

import typer

from zapvet.cli.environment import fail, in_organization

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
    from zapvet.scheduling.calendar import rotate as rotate_feed

    done = in_organization(org, lambda session, org_id: rotate_feed(session, org_id, resource))
    if done is None:
        fail(f"no resource {resource!r} in {org!r}", "use a name from its [[resources]]")
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
    from zapvet.scheduling.calendar import feeds

    found = in_organization(org, feeds)
    if not found:
        typer.echo(
            f"{org} has no calendar feed: make one with `zapvet calendar rotate --org {org}`"
        )
    for resource, created in found:
        typer.echo(f"{resource or '(whole agenda)'}\tmade {created:%Y-%m-%d %H:%M %Z}")
