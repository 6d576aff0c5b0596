"""The queue's figures and its dead letters: `stats` and `zapvet dlq`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from zapvet.cli.environment import command_settings, services_for

dlq_app = typer.Typer(
    help="The dead-letter queue: messages that failed every retry.", no_args_is_help=True
)


def stats(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    org: Annotated[
        str | None,
        typer.Option(
            "--org",
            metavar="SLUG",
            help="Instead: this organization's AI turns, tokens and cost (R$) for a month.",
        ),
    ] = None,
    month: Annotated[
        str | None,
        typer.Option(
            "--month",
            metavar="YYYY-MM",
            help="With --org: the month (default: the current one in the organization's timezone).",
        ),
    ] = None,
) -> None:
    """Show queue depth (waiting, active, delayed, dead, failed last hour), the AI's replies
    of the last day by delivery status (and those that failed after the gateway accepted
    them), and alerts; with --org, one organization's AI usage and cost per agent and per
    day."""
    if org is not None:
        from zapvet.cli.costs import org_stats

        org_stats(org, month, json_output)
        return
    if month is not None:
        from zapvet.cli.environment import fail

        fail("--month needs --org", "e.g. zapvet stats --org petfeliz --month 2026-11", 2)
    import asyncio
    import json
    from datetime import UTC, datetime

    import redis.asyncio as aioredis

    from zapvet import db
    from zapvet.queue.replies import reply_stats
    from zapvet.queue.stats import queue_stats

    settings = command_settings()

    async def read(url: str, database_url: str) -> Any:
        client = aioredis.Redis.from_url(url, socket_timeout=5)
        engine = db.build_async_engine(database_url, pool_size=1)
        try:
            async with db.async_session_maker(engine)() as session:
                replies = await reply_stats(session, datetime.now(UTC))
            return await queue_stats(client, settings.queue_namespace), replies
        finally:
            await client.aclose()
            await engine.dispose()

    with services_for(settings) as services:
        figures, replies = asyncio.run(read(services.redis_url, services.database_url))
    if json_output:
        typer.echo(json.dumps({**figures.as_json(), "replies": replies.as_json()}))
        return
    typer.echo(
        f"waiting {figures.waiting} · active {figures.active} · delayed {figures.delayed} · "
        f"dead {figures.dead} · failed last hour {figures.failed_last_hour}"
    )
    for name, depth in figures.queues.items():
        typer.echo(
            f"  {name:<10} waiting {depth.waiting} active {depth.active} "
            f"delayed {depth.delayed} dead {depth.dead}"
        )
    statuses = " · ".join(f"{name} {n}" for name, n in sorted(replies.by_status.items()))
    typer.echo(f"AI replies, last 24 h: {statuses or 'none'}")
    typer.echo(
        "  failed after the gateway accepted them: "
        f"{replies.failed_after_acceptance_last_hour} in the last hour, "
        f"{replies.failed_after_acceptance_last_day} in 24 h"
    )
    for failure in replies.latest_failures:
        stage = "after acceptance" if failure.after_acceptance else "refused"
        typer.echo(
            f"  {failure.at} conversation {failure.conversation_id} ({stage}): {failure.error}"
        )
    for alert in figures.alerts:
        typer.secho(f"ALERT: {alert}", fg=typer.colors.YELLOW)
    if not figures.alerts:
        typer.echo("no alerts")


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="How many to show, newest first.")] = 50,
) -> None:
    """List dead-lettered messages."""
    from zapvet.queue import dlq
    from zapvet.queue.broker import redis_client

    settings = command_settings()
    with services_for(settings) as services:
        client = redis_client(services.redis_url)
        dead = dlq.list_dead(client, settings.queue_namespace, limit)
    if not dead:
        typer.echo("the dead-letter queue is empty")
    for item in dead:
        typer.echo(
            f"{item.message_id}  {item.died_at:%Y-%m-%d %H:%M:%S}Z  {item.queue}/{item.actor}"
            f"{tuple(item.args)}  retries={item.retries}  {item.error}"
        )


@dlq_app.command("requeue")
def dlq_requeue(
    ids: Annotated[list[str] | None, typer.Argument(help="Message ids (default: all).")] = None,
) -> None:
    """Put dead-lettered messages back on their queue with a fresh retry budget."""
    from zapvet.queue import dlq
    from zapvet.queue.broker import build_broker, redis_client

    settings = command_settings()
    with services_for(settings) as services:
        namespace = settings.queue_namespace
        broker = build_broker(services.redis_url, namespace=namespace)
        moved = dlq.requeue(broker, redis_client(services.redis_url), namespace, ids)
    typer.echo(f"requeued {moved} message(s)")
