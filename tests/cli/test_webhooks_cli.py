"""`zapvet webhooks`: endpoints with their figures, deliveries, requeue, enable and the test
event, against the real database and a signing-checking receiver on loopback."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from click.testing import Result
from sqlalchemy import text
from sqlmodel import Session

from tests.conftest import EXAMPLE_ORG, zapvet
from tests.webhooks.conftest import SECRET, apply_text, book, with_webhook
from zapvet import db
from zapvet.clock import system_clock
from zapvet.embedded import ServiceUrls
from zapvet.models import Organization
from zapvet.testing.receiver import WebhookReceiver
from zapvet.webhooks.delivery import Attempt, attempt, claim_due
from zapvet.webhooks.events import EventType, emit

Run = Callable[..., Result]
DAY_AGO = timedelta(hours=25)


@pytest.fixture
def run(database_url: str, services: ServiceUrls) -> Run:
    def run(*args: str) -> Result:
        return zapvet(
            "webhooks", *args, env={"DATABASE_URL": database_url, "REDIS_URL": services.redis_url}
        )

    return run


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


def emit_event(
    database_url: str,
    org: Organization,
    about: int,
    event_type: EventType = "appointment.created",
    *,
    ago: timedelta = timedelta(0),
) -> int:
    """Emit `event_type` about row `about`, `ago` in the past; the newest delivery's id."""

    async def go() -> int:
        engine = db.build_async_engine(database_url, pool_size=1)
        try:
            async with db.async_session_maker(engine)() as session, session.begin():
                connection = await session.connection()
                await emit(
                    connection,
                    event_type,
                    organization_id=org.id or 0,
                    about=about,
                    now=system_clock() - ago,
                )
                newest = await connection.scalar(text("SELECT max(id) FROM webhook_deliveries"))
                return int(newest)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def deliver(database_url: str, delivery_id: int) -> Attempt:
    """What the delivery actor does with `delivery_id`, now."""

    async def go() -> Attempt:
        engine = db.build_async_engine(database_url, pool_size=2)
        try:
            async with httpx.AsyncClient() as http:
                return await attempt(
                    db.async_session_maker(engine), http, delivery_id, clock=system_clock
                )
        finally:
            await engine.dispose()

    return asyncio.run(go())


def due(database_url: str) -> list[int]:
    """What the scheduler claims now."""

    async def go() -> list[int]:
        engine = db.build_async_engine(database_url, pool_size=1)
        try:
            async with db.async_session_maker(engine)() as session, session.begin():
                return await claim_due(session, system_clock())
        finally:
            await engine.dispose()

    return asyncio.run(go())


def row(session: Session, query: str) -> tuple[object, ...]:
    session.expire_all()
    found = session.execute(text(query)).first()
    assert found is not None
    return tuple(found)


def endpoint_of(session: Session, receiver: WebhookReceiver) -> int:
    """The id of the receiver's endpoint (the example file has one of its own, off)."""
    session.expire_all()
    found = session.execute(
        text("SELECT id FROM webhook_endpoints WHERE url = :url"), {"url": receiver.url}
    ).scalar()
    assert isinstance(found, int)
    return found


def seeded(
    session: Session, database_url: str, receiver: WebhookReceiver
) -> tuple[Organization, int, int, int]:
    """petfeliz with one endpoint and three deliveries about three appointments: delivered,
    dead (its event a day old, the receiver answered 500) and pending."""
    org = apply_text(session, with_webhook(receiver.url))
    first = book(session, org, phone="5511977776666", hour=13)
    second = book(session, org, phone="5511966665555", hour=14)
    third = book(session, org, phone="5511955554444", hour=15)
    delivered = emit_event(database_url, org, first.id or 0)
    assert deliver(database_url, delivered).result == "delivered"
    dead = emit_event(database_url, org, second.id or 0, "appointment.cancelled", ago=DAY_AGO)
    receiver.fail_next(500)
    assert deliver(database_url, dead).result == "dead"
    pending = emit_event(database_url, org, third.id or 0)
    return org, delivered, dead, pending


def test_webhooks_list_shows_each_endpoint_and_its_counts(
    run: Run, session: Session, database_url: str, receiver: WebhookReceiver
) -> None:
    _, _, dead, _ = seeded(session, database_url, receiver)
    hook = endpoint_of(session, receiver)

    shown = run("list", "--org", "petfeliz")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    at = lines.index(f"#{hook}  {receiver.url}")
    assert lines[at + 1].strip() == "enabled"
    assert lines[at + 2].strip().startswith("events: appointment.created, appointment.rescheduled")
    assert "waiting 1 · dead 1 · delivered last 24 h 1 · last attempt " in lines[at + 3]
    assert lines[at + 3].endswith(f": 500 (delivery {dead}, dead)")

    listed = json.loads(run("list", "--org", "petfeliz", "--json").stdout)
    [endpoint] = [e for e in listed if e["id"] == hook]
    assert endpoint["url"] == receiver.url
    assert endpoint["enabled"] and endpoint["sending"] and endpoint["disabled_at"] is None
    assert (endpoint["waiting"], endpoint["dead"], endpoint["delivered_last_24h"]) == (1, 1, 1)
    assert endpoint["last_attempt"]["delivery_id"] == dead
    assert endpoint["last_attempt"]["status_code"] == 500
    assert endpoint["last_attempt"]["at"].endswith("-03:00")  # the shop's timezone
    # An endpoint that is off in the file says so, and counts nothing.
    for other in (e for e in listed if e["id"] != hook):
        assert not other["enabled"] and not other["sending"] and other["waiting"] == 0


def test_webhooks_list_says_how_to_add_an_endpoint_when_there_is_none(
    run: Run, session: Session, petfeliz: Organization
) -> None:
    session.execute(text("DELETE FROM webhook_endpoints"))
    session.commit()
    shown = run("list", "--org", "petfeliz")
    assert shown.exit_code == 0, shown.output
    assert "petfeliz has no webhook endpoint: add a [[webhooks]] entry" in shown.stdout
    assert json.loads(run("list", "--org", "petfeliz", "--json").stdout) == []


def test_webhooks_deliveries_are_newest_first_and_filter_by_status_and_endpoint(
    run: Run, session: Session, database_url: str, receiver: WebhookReceiver
) -> None:
    _, delivered, dead, pending = seeded(session, database_url, receiver)

    every = json.loads(run("deliveries", "--org", "petfeliz", "--json").stdout)
    assert [d["id"] for d in every] == [pending, dead, delivered]
    assert [d["status"] for d in every] == ["pending", "dead", "delivered"]
    newest = every[0]
    assert newest["event_type"] == "appointment.created"
    assert newest["event_id"].startswith("evt_") and len(newest["event_id"]) == 36
    assert newest["resource"].startswith("appointment:")
    assert newest["attempts"] == 0 and newest["next_attempt_at"] is not None
    assert every[2]["delivered_at"] is not None and every[2]["next_attempt_at"] is None

    [failed] = json.loads(
        run("deliveries", "--org", "petfeliz", "--status", "dead", "--json").stdout
    )
    assert failed["id"] == dead and failed["event_type"] == "appointment.cancelled"
    assert (failed["attempts"], failed["last_status_code"]) == (1, 500)
    assert failed["last_error"] == '{"error":"scripted 500"}'
    assert failed["next_attempt_at"] is None and failed["delivered_at"] is None

    hook = endpoint_of(session, receiver)
    table = run("deliveries", "--org", "petfeliz", "--endpoint", str(hook), "--limit", "2")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "id",
        "event",
        "status",
        "attempts",
        "code",
        "resource",
        "event",
        "id",
    ]
    assert lines[1].split()[:5] == [str(pending), "appointment.created", "pending", "0", "-"]
    assert "next attempt 20" in lines[2] and f"endpoint #{hook}" in lines[2]
    assert lines[3].split()[:5] == [str(dead), "appointment.cancelled", "dead", "1", "500"]
    assert "no more attempts (requeue it to try again)" in lines[4]
    assert lines[5].strip() == 'error: {"error":"scripted 500"}'
    assert len(lines) == 6  # --limit 2

    none = run("deliveries", "--org", "petfeliz", "--status", "queued")
    assert none.exit_code == 0 and none.stdout.strip() == "no queued deliveries in 'petfeliz'"
    unknown = run("deliveries", "--org", "petfeliz", "--endpoint", "999")
    assert unknown.exit_code == 1
    assert "no webhook endpoint 999 in 'petfeliz'" in unknown.stderr
    assert "zapvet webhooks list --org petfeliz" in unknown.stderr
    wrong = run("deliveries", "--org", "petfeliz", "--status", "failed")
    assert wrong.exit_code == 2
    assert "use one of pending, queued, delivered, dead" in wrong.stderr


def test_webhooks_requeue_revives_a_dead_delivery_and_refuses_a_delivered_one(
    run: Run, session: Session, database_url: str, receiver: WebhookReceiver
) -> None:
    _, delivered, dead, pending = seeded(session, database_url, receiver)

    refused = run("requeue", "--org", "petfeliz", str(dead), str(delivered))
    assert refused.exit_code == 1
    assert f"delivery {delivered} was delivered already: nothing requeued" in refused.stderr
    assert row(session, f"SELECT status FROM webhook_deliveries WHERE id = {dead}") == ("dead",)

    before = datetime.now(UTC)
    done = run("requeue", "--org", "petfeliz", str(dead))
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == (
        "requeued 1 delivery in 'petfeliz': due now, with another 24 h of retries"
    )
    status, retry_from, next_at = row(
        session,
        f"SELECT status, retry_from, next_attempt_at FROM webhook_deliveries WHERE id = {dead}",
    )
    assert status == "pending"
    assert isinstance(retry_from, datetime) and retry_from >= before
    assert isinstance(next_at, datetime) and before <= next_at <= datetime.now(UTC)
    # The scheduler claims it (with the pending one, head of its own line); it arrives.
    assert sorted(due(database_url)) == sorted([dead, pending])
    assert deliver(database_url, dead).result == "delivered"
    assert [e["type"] for e in receiver.accepted()] == [
        "appointment.created",
        "appointment.cancelled",
    ]

    nothing = run("requeue", "--org", "petfeliz", "--dead")
    assert (
        nothing.exit_code == 0
        and nothing.stdout.strip() == "no dead deliveries in 'petfeliz' (no change)"
    )


def dead_elsewhere(session: Session, database_url: str, receiver: WebhookReceiver) -> int:
    """A second organization ("outra", same endpoint URL) with one dead delivery: its id."""
    other = apply_text(
        session,
        with_webhook(receiver.url)
        .replace('slug = "petfeliz"', 'slug = "outra"')
        .replace('instance = "petfeliz"', 'instance = "outra"'),
    )
    theirs = emit_event(database_url, other, book(session, other, hour=16).id or 0, ago=DAY_AGO)
    receiver.fail_next(500)
    assert deliver(database_url, theirs).result == "dead"
    return theirs


def test_webhooks_requeue_touches_only_that_organizations_deliveries(
    run: Run, session: Session, database_url: str, receiver: WebhookReceiver
) -> None:
    seeded(session, database_url, receiver)
    theirs = dead_elsewhere(session, database_url, receiver)

    unknown = run("requeue", "--org", "petfeliz", str(theirs), "999")
    assert unknown.exit_code == 1
    assert f"no delivery {theirs}, 999 in 'petfeliz': nothing requeued" in unknown.stderr
    assert "zapvet webhooks deliveries --org petfeliz" in unknown.stderr

    ours = run("requeue", "--org", "petfeliz", "--dead")
    assert ours.exit_code == 0, ours.output
    assert "requeued 1 delivery in 'petfeliz'" in ours.stdout
    assert row(session, f"SELECT status FROM webhook_deliveries WHERE id = {theirs}") == ("dead",)

    usage = run("requeue", "--org", "petfeliz")
    assert usage.exit_code == 2 and "name the deliveries to requeue, or give --dead" in usage.stderr


def test_webhooks_commands_without_org_cover_every_organization(
    run: Run, session: Session, database_url: str, receiver: WebhookReceiver
) -> None:
    _, delivered, dead, _pending = seeded(session, database_url, receiver)
    theirs = dead_elsewhere(session, database_url, receiver)

    listed = run("list", "--json")
    assert listed.exit_code == 0, listed.output
    assert {e["organization"] for e in json.loads(listed.stdout)} == {"outra", "petfeliz"}
    shown = run("deliveries", "--status", "dead", "--json")
    assert {(d["organization"], d["id"]) for d in json.loads(shown.stdout)} == {
        ("petfeliz", dead),
        ("outra", theirs),
    }
    # Ids are global: each is requeued in its own organization.
    both = run("requeue", str(dead), str(theirs))
    assert both.exit_code == 0, both.output
    assert "requeued 1 delivery in 'outra'" in both.stdout
    assert "requeued 1 delivery in 'petfeliz'" in both.stdout
    unknown = run("requeue", "999")
    assert unknown.exit_code == 1 and "no delivery 999: nothing requeued" in unknown.stderr
    refused = run("requeue", str(delivered))
    assert refused.exit_code == 1 and "was delivered already" in refused.stderr
    tested = run("test")
    assert tested.exit_code == 0, tested.output
    assert len(tested.stdout.strip().splitlines()) == 2  # one endpoint in each


def test_webhooks_enable_clears_a_410_and_its_waiting_deliveries_go_again(
    run: Run, session: Session, database_url: str, receiver: WebhookReceiver
) -> None:
    org = apply_text(session, with_webhook(receiver.url))
    appointment = book(session, org)
    gone = emit_event(database_url, org, appointment.id or 0)
    receiver.fail_next(410)
    assert deliver(database_url, gone).result == "gone"
    assert due(database_url) == []  # disabled: nothing goes
    hook = endpoint_of(session, receiver)

    shown = run("list", "--org", "petfeliz").stdout
    assert "DISABLED since " in shown and "the receiver answered 410 Gone at " in shown
    assert f"zapvet webhooks enable --org petfeliz {hook}" in shown
    listed = json.loads(run("list", "--org", "petfeliz", "--json").stdout)
    assert [e["sending"] for e in listed if e["id"] == hook] == [False]

    # Requeued while disabled, it still waits, and the command says why.
    held = run("requeue", "--org", "petfeliz", str(gone))
    assert held.exit_code == 0, held.output
    assert "note: 1 of them wait for an endpoint that is not sending" in held.stderr
    assert due(database_url) == []

    enabled = run("enable", "--org", "petfeliz", str(hook))
    assert enabled.exit_code == 0, enabled.output
    assert enabled.stdout.strip() == (
        f"enabled endpoint {hook} of 'petfeliz' again: its 1 waiting delivery is due now"
    )
    assert row(
        session, f"SELECT disabled_at, disabled_reason FROM webhook_endpoints WHERE id = {hook}"
    ) == (None, None)
    assert due(database_url) == [gone]
    assert deliver(database_url, gone).result == "delivered"

    again = run("enable", "--org", "petfeliz", str(hook))
    assert again.exit_code == 0
    assert again.stdout.strip() == (
        f"endpoint {hook} of 'petfeliz' was not disabled by a 410 (no change)"
    )
    unknown = run("enable", "--org", "petfeliz", "999")
    assert unknown.exit_code == 1 and "no webhook endpoint 999 in 'petfeliz'" in unknown.stderr


def test_webhooks_test_reaches_the_receiver_signed_and_stores_nothing(
    run: Run, session: Session, receiver: WebhookReceiver
) -> None:
    apply_text(session, with_webhook(receiver.url))

    hook = endpoint_of(session, receiver)

    sent = run("test", "--org", "petfeliz")  # every endpoint that is sending: this one
    assert sent.exit_code == 0, sent.output
    assert sent.stdout.startswith(f"#{hook}  {receiver.url}: 204 in ")
    assert sent.stdout.strip().endswith(" ms")
    [got] = receiver.received
    assert got.signed and got.status == 204
    assert got.headers["x-zapvet-event"] == "webhook.test"
    assert got.headers["x-zapvet-event-id"] == got.event["id"]
    assert got.headers["x-zapvet-delivery"] == "test"
    assert got.event["type"] == "webhook.test" and got.event["id"].startswith("evt_")
    assert got.event["organization"] == {"slug": "petfeliz", "timezone": "America/Sao_Paulo"}
    assert got.event["data"] == {"message": "teste do zapvet"}
    assert row(session, "SELECT count(*) FROM webhook_events") == (0,)
    assert row(session, "SELECT count(*) FROM webhook_deliveries") == (0,)


def test_webhooks_test_fails_when_the_receiver_does_not_accept_it(
    run: Run, session: Session, receiver: WebhookReceiver
) -> None:
    apply_text(session, with_webhook(receiver.url))
    receiver.fail_next(500)

    hook = endpoint_of(session, receiver)

    failed = run("test", "--org", "petfeliz", "--endpoint", str(hook))
    assert failed.exit_code == 1
    assert f"#{hook}  {receiver.url}: answered 500 after " in failed.stdout
    assert '{"error":"scripted 500"}' in failed.stdout
    assert "1 of 1 endpoint(s) did not accept the test event" in failed.stderr

    # The SSRF guard: a loopback receiver is refused once private targets are not allowed.
    session.execute(text("UPDATE webhook_endpoints SET allow_private_targets = false"))
    session.commit()
    refused = run("test", "--org", "petfeliz")
    assert refused.exit_code == 1
    assert "failed after" in refused.stdout and "refused: " in refused.stdout
    assert len(receiver.received) == 1


def test_webhooks_commands_name_what_is_unknown(
    run: Run, session: Session, receiver: WebhookReceiver
) -> None:
    apply_text(session, EXAMPLE_ORG.read_text())
    for args in (
        ("list", "--org", "nope"),
        ("deliveries", "--org", "nope"),
        ("requeue", "--org", "nope", "1"),
        ("enable", "--org", "nope", "1"),
        ("test", "--org", "nope"),
    ):
        result = run(*args)
        assert result.exit_code == 1, args
        assert "no organization 'nope'" in result.stderr
        assert "zapvet org apply" in result.stderr

    none = run("test", "--org", "petfeliz")
    assert none.exit_code == 1 and "no webhook endpoint of 'petfeliz' is sending" in none.stderr
    missing = run("test", "--org", "petfeliz", "--endpoint", "999")
    assert missing.exit_code == 1 and "no webhook endpoint 999 in 'petfeliz'" in missing.stderr
    assert receiver.received == []


def test_webhooks_commands_have_help(run: Run) -> None:
    for command in ("list", "deliveries", "requeue", "enable", "test"):
        shown = run(command, "--help")
        assert "default: every organization" in re.sub(r"[\s│]+", " ", shown.stdout), command
        assert shown.exit_code == 0 and "--org" in shown.stdout, command
