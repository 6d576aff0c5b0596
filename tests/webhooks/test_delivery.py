"""The outbox and its delivery: signed, retried for 24 hours, in order per resource, 410."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.webhooks.conftest import (
    SECRET,
    Shop,
    apply_text,
    book,
    deliveries,
    emit_about,
    with_webhook,
)
from zapvet.proactive.webhooks import endpoint_gone
from zapvet.testing.receiver import WebhookReceiver
from zapvet.webhooks.delivery import LEASE, attempt, backoff
from zapvet.webhooks.signing import HEADER, sign, verify

pytestmark = pytest.mark.anyio


async def test_an_event_is_delivered_signed_with_its_envelope(
    shop: Shop, receiver: WebhookReceiver
) -> None:
    session, appointment = shop.session, shop.appointment
    await shop.emit()

    assert await shop.run_due() == ["delivered"]

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
    shop: Shop, receiver: WebhookReceiver
) -> None:
    session, clock = shop.session, shop.clock
    await shop.emit()
    await shop.emit("appointment.cancelled")
    receiver.fail_next(*[503] * 1000)  # down
    down_until = clock() + timedelta(hours=1)
    attempts = 0
    while clock() < down_until:
        results = await shop.run_due()
        assert set(results) <= {"retrying"}
        attempts += len(results)
        clock.advance(timedelta(seconds=30))
    receiver.answers.clear()  # back up
    back = clock()
    while len(receiver.accepted()) < 2:
        await shop.run_due()
        clock.advance(timedelta(seconds=30))
        assert clock() - back <= timedelta(minutes=16), "waited past the longest backoff"
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
    shop: Shop, receiver: WebhookReceiver
) -> None:
    session, clock = shop.session, shop.clock
    await shop.emit()
    await shop.emit("appointment.completed")
    receiver.fail_next(500, 500)

    assert await shop.run_due() == ["retrying"]
    assert await shop.run_due() == []  # not due yet, and the second waits
    clock.advance(backoff(1))
    assert await shop.run_due() == ["retrying"]
    clock.advance(backoff(2) - timedelta(seconds=1))
    assert await shop.run_due() == []
    clock.advance(timedelta(seconds=1))
    assert await shop.run_due() == ["delivered", "delivered"]
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 7, 8, 30)] == [10, 20, 40, 640, 900, 900]

    # A day later, a receiver that still refuses gets the event dead; the line moves on.
    await shop.emit("appointment.no_show")
    await shop.emit("appointment.rescheduled")
    receiver.fail_next(*[500] * 1000)
    clock.advance(timedelta(hours=23, minutes=59))
    assert await shop.run_due() == ["retrying"]
    clock.advance(timedelta(hours=1))
    assert await shop.run_due() == ["dead", "dead"]
    assert [row[2] for row in deliveries(session)] == ["delivered", "delivered", "dead", "dead"]
    error = session.execute(text("SELECT last_error FROM webhook_deliveries WHERE id = 3")).scalar()
    assert error == '{"error":"scripted 500"}'


async def test_lines_are_per_resource_and_a_lost_claim_is_taken_again(
    shop: Shop, receiver: WebhookReceiver
) -> None:
    first = shop.appointment
    other = book(shop.session, shop.org, phone="5511966665555", hour=15)
    await shop.emit()
    await shop.emit("appointment.cancelled")
    await shop.emit(about=other)
    assert await shop.claim() == [1, 3]  # the heads of both lines; the cancellation waits
    # The queue message for 1 is lost (Redis flushed): after the lease it is claimed again.
    assert (await attempt(shop.sessions, shop.http, 3, clock=shop.clock)).result == "delivered"
    assert await shop.claim() == []
    shop.clock.advance(LEASE)
    assert await shop.run_due() == ["delivered", "delivered"]
    assert [e["data"]["appointment"]["id"] for e in receiver.accepted()] == [
        other.id,
        first.id,
        first.id,
    ]


async def test_410_disables_the_endpoint_and_tells_the_owners(
    shop: Shop, receiver: WebhookReceiver
) -> None:
    session, org, clock = shop.session, shop.org, shop.clock
    await shop.emit()
    receiver.fail_next(410)
    [claimed] = await shop.claim()
    done = await attempt(shop.sessions, shop.http, claimed, clock=clock)
    assert done.result == "gone" and done.endpoint_id is not None

    reason = session.execute(
        text("SELECT disabled_reason FROM webhook_endpoints WHERE id = :id"),
        {"id": done.endpoint_id},
    ).scalar()
    assert "410 Gone" in str(reason)
    # Disabled: nothing new is written for it, and what waits stays (not dropped).
    await shop.emit("appointment.cancelled")
    assert deliveries(session) == [(1, "appointment.created", "pending", 1, 410)]
    clock.advance(timedelta(hours=1))
    assert await shop.run_due() == []

    async with shop.sessions() as s, s.begin():
        told = await endpoint_gone(s, org.id or 0, done.endpoint_id, receiver.url, clock())
    assert len(told) == 1
    content = session.execute(
        text("SELECT content FROM aurora_proactive_messages WHERE message_type = 'webhook_alert'")
    ).scalar()
    assert f"zapvet webhooks enable --org petfeliz {done.endpoint_id}" in str(content)
    assert "127.0.0.1" in str(content)


async def test_a_target_refused_at_send_time_is_not_contacted(
    shop: Shop, receiver: WebhookReceiver
) -> None:
    session = shop.session
    # The row as an older check let it in: the send checks again.
    session.execute(
        text("UPDATE webhook_endpoints SET allow_private_targets = false WHERE url = :url"),
        {"url": receiver.url},
    )
    session.commit()
    await shop.emit()
    assert await shop.run_due() == ["retrying"]
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
