"""What every command needs: settings, the services in use, and one way to fail."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import typer

from zapvet.config import Settings, load_settings
from zapvet.embedded import ServiceUrls, running_services
from zapvet.errors import ConfigError, EmbeddedServiceError

T = TypeVar("T")


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print `message` (and a hint) in red on stderr and exit with `code`."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    if hint:
        typer.echo(f"  → {hint}", err=True)
    raise typer.Exit(code)


def command_settings() -> Settings:
    """The settings, with logging set up: warnings only, redacted unless capture is on.

    Long-running commands raise the level to INFO with another `setup_logging` call.
    """
    from zapvet.logging import setup_logging

    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc), "fix or unset that variable (in the environment or in .env)", 2)
    setup_logging(settings, level=logging.WARNING)
    return settings


@contextmanager
def services_for(settings: Settings) -> Iterator[ServiceUrls]:
    """The database and Redis to use: the configured ones, or embedded servers started here."""
    try:
        with running_services(settings) as services:
            yield services
    except EmbeddedServiceError as exc:
        fail(str(exc), "set DATABASE_URL / REDIS_URL to use servers of your own")


def redact_url(url: str) -> str:
    """`url` without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def in_organization(slug: str, work: Callable[[Any, int], Awaitable[T]]) -> T:
    """Run `work(session, organization_id)` in one transaction of the organization `slug`,
    on the services in use; fail (exit 1, with what to do) when there is no such slug."""
    import asyncio

    from sqlmodel import select

    from zapvet import db
    from zapvet.models import Organization

    settings = command_settings()

    async def run(url: str) -> tuple[bool, T | None]:
        engine = db.build_async_engine(url, pool_size=1)
        try:
            async with db.async_session_maker(engine)() as session, session.begin():
                org_id = (
                    await session.exec(select(Organization.id).where(Organization.slug == slug))
                ).first()
                if org_id is None:
                    return False, None
                return True, await work(session, org_id)
        finally:
            await engine.dispose()

    with services_for(settings) as services:
        found, done = asyncio.run(run(services.database_url))
    if not found:
        fail(
            f"no organization {slug!r}", "check the slug, or apply its file with `zapvet org apply`"
        )
    return cast(T, done)  # `work`'s own answer, None included
