"""`zapvet webhooks`: an organization's outgoing webhooks (list, deliveries, requeue, enable,
test). The statements are in `webhooks/overview.py`, `recovery.py` and `probe.py`; the
printing in `webhook_views.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from zapvet.cli.environment import fail, in_organization

if TYPE_CHECKING:
    from zapvet.webhooks.overview import Delivery, Endpoint

webhooks_app = typer.Typer(
    help="Outgoing webhooks of an organization: endpoints, deliveries, retries, a test event "
    "(docs/webhooks.md).",
    no_args_is_help=True,
)

Org = Annotated[
    str | None,
    typer.Option(
        "--org", help="The organization's slug; default: every organization.", show_default=False
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
STATUSES = ("pending", "queued", "delivered", "dead")


@webhooks_app.command("list")
def list_endpoints(org: Org = None, json_output: Json = False) -> None:
    """Each endpoint: its URL and events, whether it is sending (or why not: off in the
    organization file, or disabled by a 410), how many deliveries wait, are dead or were
    delivered in the last 24 hours, and how its last attempt went."""
    import json

    documents: list[dict[str, Any]] = []
    slugs = _slugs(org)
    if not slugs and not json_output:
        typer.echo("no organization yet: apply one with `zapvet org apply FILE.toml`")
    for slug in slugs:
        documents += _list_one(slug, json_output, labelled=org is None)
    if json_output:
        typer.echo(json.dumps(documents, ensure_ascii=False))


def _list_one(org: str, json_output: bool, *, labelled: bool) -> list[dict[str, Any]]:
    from zapvet.cli.webhook_views import endpoint_json, endpoint_lines
    from zapvet.clock import system_clock
    from zapvet.webhooks.overview import endpoints, timezone_of

    async def work(session: Any, org_id: int) -> tuple[str, list[Endpoint]]:
        return await timezone_of(session, org_id), await endpoints(
            session, org_id, now=system_clock()
        )

    timezone, found = in_organization(org, work)
    if json_output:
        return [_labelled(endpoint_json(e, timezone), org, labelled) for e in found]
    if not found:
        typer.echo(
            f"{org} has no webhook endpoint: add a [[webhooks]] entry to its organization file "
            "and run `zapvet org apply` (docs/webhooks.md)"
        )
    for endpoint in found:
        typer.echo("\n".join(endpoint_lines(endpoint, org, timezone)))
    return []


@webhooks_app.command("deliveries")
def list_deliveries(
    org: Org = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="pending|queued|delivered|dead",
            help="Only deliveries in this status.",
            show_default=False,
        ),
    ] = None,
    endpoint: Annotated[
        int | None,
        typer.Option(
            "--endpoint",
            metavar="ID",
            help="Only this endpoint's (its id in `zapvet webhooks list`).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first.")] = 20,
    json_output: Json = False,
) -> None:
    """The latest deliveries, newest first: event type and id (`evt_…`, what receivers
    dedupe by), resource, status, attempts, the last HTTP status and error excerpt, when the
    next attempt is due or when it was delivered (in the organization's timezone)."""
    import json

    if status is not None and status not in STATUSES:
        fail(f"no delivery status {status!r}", f"use one of {', '.join(STATUSES)}", 2)
    slugs = _slugs(org, "webhook_endpoints", [endpoint]) if endpoint is not None else _slugs(org)
    if not slugs:
        fail(f"no webhook endpoint {endpoint}", "see the ids with `zapvet webhooks list`")
    documents: list[dict[str, Any]] = []
    for slug in slugs:
        documents += _deliveries_of(
            slug, status, endpoint, limit, json_output, labelled=org is None
        )
    if json_output:
        typer.echo(json.dumps(documents, ensure_ascii=False))


def _deliveries_of(
    org: str,
    status: str | None,
    endpoint: int | None,
    limit: int,
    json_output: bool,
    *,
    labelled: bool,
) -> list[dict[str, Any]]:
    from zapvet.cli.webhook_views import delivery_json, delivery_lines
    from zapvet.webhooks.overview import deliveries, has_endpoint, timezone_of

    async def work(session: Any, org_id: int) -> tuple[str, list[Delivery]] | None:
        if endpoint is not None and not await has_endpoint(session, org_id, endpoint):
            return None
        found = await deliveries(session, org_id, status=status, endpoint_id=endpoint, limit=limit)
        return await timezone_of(session, org_id), found

    done = in_organization(org, work)
    if done is None:
        fail(
            f"no webhook endpoint {endpoint} in {org!r}",
            f"see the ids with `zapvet webhooks list --org {org}`",
        )
    timezone, found = done
    if json_output:
        return [_labelled(delivery_json(d, timezone), org, labelled) for d in found]
    if not found:
        typer.echo(f"no {status or 'webhook'} deliveries in {org!r}")
        return []
    if labelled:
        typer.echo(f"{org}:")
    typer.echo(
        f"{'id':>6}  {'event':<24} {'status':<9} {'attempts':>8} {'code':>5}  resource  event id"
    )
    for delivery in found:
        typer.echo("\n".join(delivery_lines(delivery, timezone)))
    return []


def _ids(ids: tuple[int, ...]) -> str:
    return ", ".join(map(str, ids))


@webhooks_app.command("requeue")
def requeue(
    org: Org = None,
    ids: Annotated[
        list[int] | None,
        typer.Argument(help="Delivery ids (see `zapvet webhooks deliveries`).", show_default=False),
    ] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead delivery instead.")] = False,
) -> None:
    """Try deliveries again: back to pending, due now, with another 24 hours of retries. The
    scheduler sends them within seconds, each after what waits before it about the same
    resource. Delivered ones are refused (receivers would get them twice): then nothing is
    requeued."""
    if not ids and not dead:
        fail(
            "name the deliveries to requeue, or give --dead",
            f"e.g. zapvet webhooks requeue --org {org or 'SLUG'} --dead",
            2,
        )
    if ids and dead:
        fail("give delivery ids or --dead, not both", "run the command once for each", 2)
    if org is not None:
        _requeue_in(org, ids or [], dead=dead)
        return
    if dead:
        for slug in _slugs(None):
            _requeue_in(slug, [], dead=True)
        return
    owners = _owners("webhook_deliveries", ids or [])
    unknown = sorted(set(ids or []) - {i for owned in owners.values() for i in owned})
    if unknown:
        fail(
            f"no delivery {_ids(tuple(unknown))}: nothing requeued",
            "see the ids with `zapvet webhooks deliveries`",
        )
    for slug, owned in owners.items():
        _requeue_in(slug, owned, dead=False)


def _requeue_in(org: str, ids: list[int], *, dead: bool) -> None:
    from zapvet.clock import system_clock
    from zapvet.webhooks.recovery import requeue as requeue_deliveries

    done = in_organization(
        org,
        lambda session, org_id: requeue_deliveries(
            session, org_id, ids, dead=dead, now=system_clock()
        ),
    )
    if done.unknown:
        fail(
            f"no delivery {_ids(done.unknown)} in {org!r}: nothing requeued",
            f"see the ids with `zapvet webhooks deliveries --org {org}`",
        )
    if done.delivered:
        fail(
            f"delivery {_ids(done.delivered)} was delivered already: nothing requeued",
            "leave it out; receivers would get it twice",
        )
    if done.queued:
        fail(
            f"delivery {_ids(done.queued)} is being attempted now: nothing requeued",
            "wait a moment, then check it with `zapvet webhooks deliveries`",
        )
    if done.count == 0:
        typer.echo(f"no dead deliveries in {org!r} (no change)")
        return
    typer.echo(
        f"requeued {done.count} deliver{'y' if done.count == 1 else 'ies'} in {org!r}: due "
        "now, with another 24 h of retries"
    )
    if done.held:
        typer.secho(
            f"note: {done.held} of them wait for an endpoint that is not sending (off in the "
            f"organization file, or disabled by a 410): see `zapvet webhooks list --org {org}`",
            err=True,
            fg=typer.colors.YELLOW,
        )


@webhooks_app.command("enable")
def enable(
    endpoint: Annotated[
        int, typer.Argument(help="The endpoint's id (see `zapvet webhooks list`).")
    ],
    org: Org = None,
) -> None:
    """Send to an endpoint a 410 Gone disabled, again: what waited for it is due now, with
    another 24 hours of retries."""
    from zapvet.clock import system_clock
    from zapvet.webhooks.recovery import enable as enable_endpoint

    if org is None:
        owner = list(_owners("webhook_endpoints", [endpoint]))
        if not owner:
            fail(f"no webhook endpoint {endpoint}", "see the ids with `zapvet webhooks list`")
        org = owner[0]
    done = in_organization(
        org,
        lambda session, org_id: enable_endpoint(session, org_id, endpoint, now=system_clock()),
    )
    if not done.found:
        fail(
            f"no webhook endpoint {endpoint} in {org!r}",
            f"see the ids with `zapvet webhooks list --org {org}`",
        )
    if done.was_disabled:
        typer.echo(
            f"enabled endpoint {endpoint} of {org!r} again: its {done.waiting} waiting "
            f"deliver{'y is' if done.waiting == 1 else 'ies are'} due now"
        )
    else:
        typer.echo(f"endpoint {endpoint} of {org!r} was not disabled by a 410 (no change)")
    if not done.in_file_enabled:
        typer.secho(
            "note: it is off in the organization file (enabled = false, or no longer listed): "
            "nothing goes to it until it is on there and applied",
            err=True,
            fg=typer.colors.YELLOW,
        )


@webhooks_app.command("test")
def test(
    org: Org = None,
    endpoint: Annotated[
        int | None,
        typer.Option(
            "--endpoint",
            metavar="ID",
            help="Only this endpoint (even a disabled one); default: every one that is sending.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Send one `webhook.test` event now, signed like every event, and print each
    endpoint's answer and how long it took. Nothing is stored or retried. Exit code 1 if any
    endpoint did not answer 2xx."""
    if endpoint is not None:
        slugs = _slugs(org, "webhook_endpoints", [endpoint])
        if not slugs:
            fail(f"no webhook endpoint {endpoint}", "see the ids with `zapvet webhooks list`")
    else:
        slugs = _slugs(org)
    tried = failed = 0
    for slug in slugs:
        sent, refused = _test_in(slug, endpoint, alone=org is not None or endpoint is not None)
        tried, failed = tried + sent, failed + refused
    if not tried:
        fail(
            "no webhook endpoint is sending",
            "see `zapvet webhooks list`, or name one with --endpoint",
        )
    if failed:
        fail(
            f"{failed} of {tried} endpoint(s) did not accept the test event",
            "a receiver answers 2xx to a request whose X-Zapvet-Signature verifies "
            "(docs/webhooks.md)",
        )


def _test_in(org: str, endpoint: int | None, *, alone: bool) -> tuple[int, int]:
    """Send the test event to `org`'s endpoints (those sending, or `endpoint`); how many
    were tried and how many did not answer 2xx. `alone`: the organization was asked for, so
    having nothing to test is an error, not a skip."""
    import asyncio

    from zapvet.clock import system_clock
    from zapvet.webhooks.overview import timezone_of
    from zapvet.webhooks.probe import Probe, client, probes, send_test

    async def work(session: Any, org_id: int) -> tuple[str, list[Probe]]:
        return await timezone_of(session, org_id), await probes(session, org_id, endpoint)

    timezone, found = in_organization(org, work)
    if endpoint is not None and not found:
        fail(
            f"no webhook endpoint {endpoint} in {org!r}",
            f"see the ids with `zapvet webhooks list --org {org}`",
        )
    targets = found if endpoint is not None else [p for p in found if p.sending]
    if not targets:
        if alone:
            fail(
                f"no webhook endpoint of {org!r} is sending",
                f"see `zapvet webhooks list --org {org}`, or name one with --endpoint",
            )
        return 0, 0

    async def send_all() -> list[Any]:
        async with client() as http:
            return [
                await send_test(http, probe, slug=org, timezone=timezone, now=system_clock())
                for probe in targets
            ]

    failed = 0
    for probe, answer in zip(targets, asyncio.run(send_all()), strict=True):
        took = f"{answer.elapsed_ms:.0f} ms"
        note = "" if probe.sending else " (not sending: tested as asked)"
        if answer.status is not None and 200 <= answer.status < 300:
            typer.echo(f"#{probe.endpoint_id}  {probe.url}{note}: {answer.status} in {took}")
            continue
        failed += 1
        got = f"answered {answer.status}" if answer.status is not None else "failed"
        detail = f": {answer.error}" if answer.error else ""
        typer.secho(
            f"#{probe.endpoint_id}  {probe.url}{note}: {got} after {took}{detail}",
            fg=typer.colors.RED,
        )
    return len(targets), failed


def _labelled(document: dict[str, Any], org: str, labelled: bool) -> dict[str, Any]:
    """`document` with its organization's slug first, when several organizations are shown."""
    return {"organization": org, **document} if labelled else document


def _slugs(org: str | None, table: str | None = None, ids: list[int] | None = None) -> list[str]:
    """The organizations a command covers: `org`, or without --org every organization (those
    owning `ids` of `table`, when given)."""
    if org is not None:
        return [org]
    if table is not None:
        return list(_owners(table, ids or []))
    return list(_owners(None, []))


def _owners(table: str | None, ids: list[int]) -> dict[str, list[int]]:
    """Slug → the `ids` of `table` it owns (every organization, with no ids, when no table)."""
    import asyncio

    from sqlalchemy import text

    from zapvet import db
    from zapvet.cli.environment import command_settings, services_for

    assert table in (None, "webhook_endpoints", "webhook_deliveries")
    query = (
        "SELECT slug, NULL FROM organizations ORDER BY slug"
        if table is None
        else f"SELECT o.slug, t.id FROM {table} t JOIN organizations o"
        " ON o.id = t.organization_id WHERE t.id = ANY(:ids) ORDER BY o.slug, t.id"
    )

    async def read(url: str) -> dict[str, list[int]]:
        engine = db.build_async_engine(url, pool_size=1)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(text(query), {"ids": ids})
                owned: dict[str, list[int]] = {}
                for slug, found in rows:
                    owned.setdefault(slug, [])
                    if found is not None:
                        owned[slug].append(int(found))
                return owned
        finally:
            await engine.dispose()

    with services_for(command_settings()) as services:
        return asyncio.run(read(services.database_url))
