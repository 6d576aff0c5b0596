"""`zapvet status`: the database and Redis in use, the schema, the organizations and the
connection state of their WhatsApp instances."""

from __future__ import annotations

from typing import Annotated

import typer

from zapvet.cli.environment import command_settings, redact_url, services_for


def status(
    port: Annotated[int, typer.Option(help="Bridge port used to print webhook URLs.")] = 8080,
) -> None:
    """Show the database and Redis in use, the schema revision and the organizations."""
    import redis

    from zapvet import db
    from zapvet.org.summary import summarise

    settings = command_settings()
    with services_for(settings) as services:
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
            if instance in org.connections:
                state, since = org.connections[instance]
                line = f"    {instance}: {state} since {since:%Y-%m-%d %H:%M} UTC"
                up = state == "open"
                typer.secho(line, fg=None if up else typer.colors.YELLOW)
            elif provider == "evolution":
                typer.echo(f"    {instance}: no connection event received yet")
    if services.embedded:
        typer.echo(
            f"embedded servers ({', '.join(services.embedded)}) stopped as this command ended"
        )
