"""`zapvet db`: database schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from zapvet.cli.environment import command_settings, services_for

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Run the database migrations up to the newest revision (or REVISION)."""
    from zapvet import db

    settings = command_settings()
    with services_for(settings) as services:
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

    with services_for(command_settings()) as services:
        engine = db.build_engine(services.database_url, pool_size=1)
        try:
            current = db.current_revision(engine)
        finally:
            engine.dispose()
    head = db.head_revision()
    state = "up to date" if current == head else "run `zapvet db upgrade`"
    typer.echo(f"database at {current or 'empty'}; newest is {head} ({state})")
