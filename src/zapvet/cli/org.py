"""`zapvet org`: organizations created or updated from TOML files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zapvet.cli.environment import command_settings, fail, services_for
from zapvet.errors import OrgFileError

org_app = typer.Typer(
    help="Organizations: create or update them from TOML files.", no_args_is_help=True
)


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
        fail(str(exc), "fix the keys above and apply again; nothing was written")
    with services_for(command_settings()) as services:
        engine = db.build_engine(services.database_url, pool_size=1)
        try:
            _require_schema(engine)
            factory = db.session_maker(engine)
            try:
                with db.transaction(factory) as session:
                    report = apply_spec(session, spec)
            except OrgFileError as exc:
                fail(str(OrgFileError(file, exc.problems)), "nothing was written")
        finally:
            engine.dispose()
    if not report.changes:
        typer.echo(f"organization {report.slug!r} is up to date (no changes)")
    else:
        verb = "created" if report.created else "updated"
        typer.echo(f"organization {report.slug!r} {verb} (id {report.organization_id}):")
        for change in report.changes:
            typer.echo(f"  {change}")
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)


def _require_schema(engine: object) -> None:
    from sqlalchemy import Engine

    from zapvet import db

    assert isinstance(engine, Engine)
    current, head = db.current_revision(engine), db.head_revision()
    if current != head:
        fail(
            f"the database schema is at {current or 'nothing'}, not {head}",
            "run `zapvet db upgrade` first",
        )
