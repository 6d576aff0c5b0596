"""The outbox and its delivery: signed, retried for 24 hours, in order per resource, 410."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.webhooks.conftest import SECRET, apply_text, book, with_webhook
from zapvet.models import Appointment, Organization
from zapvet.proactive.webhooks import endpoint_gone
from zapvet.testing.receiver import WebhookReceiver
from zapvet.testing.stack import MovableClock
from zapvet.webhooks.delivery import LEASE, attempt, backoff, claim_due
from zapvet.webhooks.events import emit
from zapvet.webhooks.signing import HEADER, sign, verify

pytestmark = pytest.mark.anyio


async def emit_about(
    sessions: async_sessionmaker[AsyncSession],
    org: Organization,
    appointment: Appointment,
    event_type: str = "appointment.created",
    now: datetime | None = None,
) -> None:
    async with sessions() as session, session.begin():
        await emit(
            await session.connection(),
            event_type,  # type: ignore[arg-type]
            organization_id=org.id or 0,
            about=appointment.id or 0,
            now=now or datetime.now(UTC),
        )


def deliveries(session: Session) -> list[tuple[object, ...]]:
    return [
        tuple(row)
        for row in session.execute(
            text(
                "SELECT d.id, v.type, d.status, d.attempts, d.last_status_code"
                "  FROM webhook_deliveries d JOIN webhook_events v ON v.id = d.event_id"
                " ORDER BY d.id"
            )
        )
    ]


async def run_due(
    sessions: async_sessionmaker[AsyncSession], clock: MovableClock, http: httpx.AsyncClient
) -> list[str]:
    """What the scheduler and the actor do at `clock()`: claim what is due, attempt each
    (and the next of its line, as the actor chains)."""
    async with sessions() as session, session.begin():
        due = await claim_due(session, clock())
    results = []
    while due:
        done = await attempt(sessions, http, due.pop(0), clock=clock)
        results.append(done.result)
        if done.following is not None:
            due.append(done.following)
    return results


@pytest.fixture
async def http() -> httpx.AsyncClient:
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))


async def test_an_event_is_delivered_signed_with_its_envelope(
    session: Session,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
    http: httpx.AsyncClient,
) -> None:
    org = apply_text(session, with_webhook(receiver.url))
    appointment = book(session, org)
    clock = MovableClock()
    await emit_about(sessions, org, appointment, now=clock())

    assert await run_due(sessions, clock, http) == ["delivered"]

    [got] = receiver.received
    assert got.signed and got.status == 204
    assert got.headers["x-zapvet-event"] == "appointment.created"
    assert got.headers["content-type"] == "application/json"
    event = got.event
    assert event["id"].startswith("evt_") and event["id"] == got.headers["x-zapvet-event-id"]
    assert event["type"] == "appointment.created"
    assert event["organization"] == {"slug": "petfeliz", "timezone": "America/Sao_Paulo"}
    booked = event["data"]["appointment"]
    assert booked["id"] == appointment.id and booked["status"] == "scheduled"
    assert booked["starts_at"] == "2026-12-10T13:00:00Z"
    assert booked["price_cents"] == appointment.price_cents
    assert booked["pet"]["name"] == "Rex"
    assert booked["contact"] == {
        "id": appointment.contact_id,
        "name": "Maria Souza",
        "phone": "+5511977776666",
    }
    assert deliveries(session) == [(1, "appointment.created", "delivered", 1, 204)]


async def test_nothing_is_written_when_no_endpoint_listens(
    session: Session, sessions: async_sessionmaker[AsyncSession], receiver: WebhookReceiver
) -> None:
    org = apply_text(session, with_webhook(receiver.url, ["contact.created"]))
    appointment = book(session, org)
    await emit_about(sessions, org, appointment)
    assert session.execute(text("SELECT count(*) FROM webhook_events")).scalar() == 0


async def test_a_receiver_down_for_an_hour_loses_nothing(
    session: Session,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
    http: httpx.AsyncClient,
) -> None:
    org = apply_text(session, with_webhook(receiver.url))
    appointment = book(session, org)
    clock = MovableClock()
    await emit_about(sessions, org, appointment, now=clock())
    await emit_about(sessions, org, appointment, "appointment.cancelled", now=clock())
    receiver.fail_next(*[503] * 1000)  # down
    down_until = clock() + timedelta(hours=1)
    attempts = 0
    while clock() < down_until:
        results = await run_due(sessions, clock, http)
        assert set(results) <= {"retrying"}
        attempts += len(results)
        clock.advance(timedelta(seconds=30))
    receiver.answers.clear()  # back up
    for _ in range(200):
        if len(receiver.accepted()) == 2:
            break
        await run_due(sessions, clock, http)
        clock.advance(timedelta(minutes=1))
    # Both arrived, in order, the second only after the first (same appointment).
    assert [e["type"] for e in receiver.accepted()] == [
        "appointment.created",
        "appointment.cancelled",
    ]
    assert 8 <= attempts <= 12  # 10 s doubling: about ten tries in the hour, not hundreds
    first_cancelled = next(
        i for i, r in enumerate(receiver.received) if r.event["type"] == "appointment.cancelled"
    )
    assert all(
        r.event["type"] == "appointment.created" for r in receiver.received[:first_cancelled]
    )
    assert [row[2] for row in deliveries(session)] == ["delivered", "delivered"]


async def test_retries_wait_longer_each_time_and_die_after_a_day(
    session: Session,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
    http: httpx.AsyncClient,
) -> None:
    org = apply_text(session, with_webhook(receiver.url))
    appointment = book(session, org)
    clock = MovableClock()
    await emit_about(sessions, org, appointment, now=clock())
    await emit_about(sessions, org, appointment, "appointment.completed", now=clock())
    receiver.fail_next(500, 500)

    assert await run_due(sessions, clock, http) == ["retrying"]
    assert await run_due(sessions, clock, http) == []  # not due yet, and the second waits
    clock.advance(backoff(1))
    assert await run_due(sessions, clock, http) == ["retrying"]
    clock.advance(backoff(2) - timedelta(seconds=1))
    assert await run_due(sessions, clock, http) == []
    clock.advance(timedelta(seconds=1))
    assert await run_due(sessions, clock, http) == ["delivered", "delivered"]
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 9, 30)] == [10, 20, 40, 2560, 3600]

    # A day later, a receiver that still refuses gets the event dead; the line moves on.
    await emit_about(sessions, org, appointment, "appointment.no_show", now=clock())
    await emit_about(sessions, org, appointment, "appointment.rescheduled", now=clock())
    receiver.fail_next(*[500] * 1000)
    clock.advance(timedelta(hours=23, minutes=59))
    assert await run_due(sessions, clock, http) == ["retrying"]
    clock.advance(timedelta(hours=1))
    assert await run_due(sessions, clock, http) == ["dead", "dead"]
    assert [row[2] for row in deliveries(session)] == ["delivered", "delivered", "dead", "dead"]
    error = session.execute(text("SELECT last_error FROM webhook_deliveries WHERE id = 3")).scalar()
    assert error == '{"error":"scripted 500"}'


async def test_lines_are_per_resource_and_a_lost_claim_is_taken_again(
    session: Session,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
    http: httpx.AsyncClient,
) -> None:
    org = apply_text(session, with_webhook(receiver.url))
    first = book(session, org)
    other = book(session, org, phone="5511966665555", hour=15)
    clock = MovableClock()
    await emit_about(sessions, org, first, now=clock())
    await emit_about(sessions, org, first, "appointment.cancelled", now=clock())
    await emit_about(sessions, org, other, now=clock())
    async with sessions() as s, s.begin():
        claimed = await claim_due(s, clock())
    assert claimed == [1, 3]  # the heads of the two lines; the cancellation waits for 1
    # The queue message for 1 is lost (Redis flushed): after the lease it is claimed again.
    assert await attempt(sessions, http, 3, clock=clock) is not None
    async with sessions() as s, s.begin():
        assert await claim_due(s, clock()) == []
    clock.advance(LEASE)
    assert await run_due(sessions, clock, http) == ["delivered", "delivered"]
    assert [e["data"]["appointment"]["id"] for e in receiver.accepted()] == [
        other.id,
        first.id,
        first.id,
    ]


async def test_410_disables_the_endpoint_and_tells_the_owners(
    session: Session,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
    http: httpx.AsyncClient,
) -> None:
    org = apply_text(session, with_webhook(receiver.url))
    appointment = book(session, org)
    clock = MovableClock()
    await emit_about(sessions, org, appointment, now=clock())
    receiver.fail_next(410)
    async with sessions() as s, s.begin():
        [claimed] = await claim_due(s, clock())
    done = await attempt(sessions, http, claimed, clock=clock)
    assert done.result == "gone" and done.endpoint_id is not None

    reason = session.execute(
        text("SELECT disabled_reason FROM webhook_endpoints WHERE id = :id"),
        {"id": done.endpoint_id},
    ).scalar()
    assert "410 Gone" in str(reason)
    # Disabled: nothing new is written for it, and what waits stays (not dropped).
    await emit_about(sessions, org, appointment, "appointment.cancelled", now=clock())
    assert deliveries(session) == [(1, "appointment.created", "pending", 1, 410)]
    clock.advance(timedelta(hours=1))
    assert await run_due(sessions, clock, http) == []

    async with sessions() as s, s.begin():
        told = await endpoint_gone(s, org.id or 0, done.endpoint_id, receiver.url, clock())
    assert len(told) == 1
    content = session.execute(
        text("SELECT content FROM aurora_proactive_messages WHERE message_type = 'webhook_alert'")
    ).scalar()
    assert f"zapvet webhooks enable --org petfeliz {done.endpoint_id}" in str(content)
    assert "127.0.0.1" in str(content)


async def test_a_target_refused_at_send_time_is_not_contacted(
    session: Session,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
    http: httpx.AsyncClient,
) -> None:
    org = apply_text(session, with_webhook(receiver.url))
    appointment = book(session, org)
    # The row as an older check let it in: the send checks again.
    session.execute(
        text("UPDATE webhook_endpoints SET allow_private_targets = false WHERE url = :url"),
        {"url": receiver.url},
    )
    session.commit()
    clock = MovableClock()
    await emit_about(sessions, org, appointment, now=clock())
    assert await run_due(sessions, clock, http) == ["retrying"]
    assert receiver.received == []
    error = session.execute(text("SELECT last_error FROM webhook_deliveries")).scalar()
    assert "refused" in str(error)


def test_signatures_verify_and_refuse_replays_and_tampering() -> None:
    body = b'{"id":"evt_1"}'
    header = sign(SECRET, body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify(SECRET, header, body, now=1_700_000_100)
    assert not verify(SECRET, header, body, now=1_700_000_000 + 301)  # replayed later
    assert not verify(SECRET, header, body + b" ", now=1_700_000_000)
    assert not verify("another-secret-0000", header, body, now=1_700_000_000)
    assert not verify(SECRET, "v1=abc", body, now=1_700_000_000)
    # The documented computation: hex HMAC-SHA256 of "t.body".
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert HEADER == "X-Zapvet-Signature"
