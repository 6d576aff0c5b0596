"""Webhooks through the real pipeline: a customer's message and the AI's reply reach a shop's
receiver as signed events, from the bridge and the worker, via the scheduler and the
`deliver_webhook` actor on Dramatiq; a receiver that is down gets them once it is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta

import pytest
from langchain_core.messages import AIMessage
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.webhooks.conftest import with_webhook
from zapvet import db
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.queue.scheduler import tick
from zapvet.testing.receiver import WebhookReceiver
from zapvet.testing.stack import LocalStack, MovableClock
from zapvet.webhooks.delivery import backoff

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

CUSTOMER = "5511977776666"
EVENTS = ["contact.created", "message.received", "message.sent"]


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def stack(
    database_url: str, services: ServiceUrls, receiver: WebhookReceiver, clock: MovableClock
) -> Iterator[LocalStack]:
    with LocalStack(
        database_url=database_url,
        redis_url=services.redis_url,
        model=ScriptedChatModel(responder=lambda _: AIMessage("Oi! Como posso ajudar?")),
        org_text=with_webhook(receiver.url, EVENTS).replace(
            "webhook_message_text = false", "webhook_message_text = true"
        ),
        debounce_seconds=0,
        clock=clock,
    ) as local:
        yield local


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.build_async_engine(database_url, pool_size=2)
    yield db.async_session_maker(engine)
    await engine.dispose()


async def sweep_until(
    stack: LocalStack,
    sessions: async_sessionmaker[AsyncSession],
    clock: MovableClock,
    done: Callable[[], bool],
    *,
    step: timedelta = timedelta(0),
) -> None:
    """Tick the scheduler (which hands due deliveries to the worker) until `done()`; a hang
    guard, not a timing check."""
    for _ in range(600):
        if done():
            return
        async with sessions() as session:
            claimed = await session.scalar(
                text("SELECT count(*) FROM webhook_deliveries WHERE status = 'queued'")
            )
        if not claimed:  # the worker has settled what it was handed: time may pass
            clock.advance(step)
            await tick(sessions, stack.queue, clock(), plan=False)
        await asyncio.sleep(0.05)
    raise TimeoutError("the receiver never got the events")


async def test_a_conversation_reaches_the_receiver_signed_and_survives_an_outage(
    stack: LocalStack,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
    clock: MovableClock,
) -> None:
    stack.say(CUSTOMER, "Oi, tudo bem?")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
    await sweep_until(stack, sessions, clock, lambda: len(receiver.accepted()) == 3)

    by_type = {event["type"]: event for event in receiver.accepted()}
    assert sorted(by_type) == sorted(EVENTS)
    assert all(r.signed for r in receiver.received)
    assert by_type["contact.created"]["data"]["contact"]["phone"] == f"+{CUSTOMER}"
    assert by_type["message.received"]["data"]["message"]["text"] == "Oi, tudo bem?"
    sent = by_type["message.sent"]["data"]["message"]
    assert sent["text"] == "Oi! Como posso ajudar?" and sent["by"] == "ai"
    conversation = by_type["message.received"]["data"]["message"]["conversation_id"]
    assert sent["conversation_id"] == conversation
    # In its conversation's line, what the customer said left before the reply.
    order = [e["type"] for e in receiver.accepted() if e["type"].startswith("message.")]
    assert order == ["message.received", "message.sent"]

    # The receiver goes down; the next exchange waits and arrives once it is back, in order.
    receiver.fail_next(*[503] * 6)
    stack.say(CUSTOMER, "Vocês abrem sábado?")
    stack.wait(lambda: len(stack.gateway.sent) == 2, what="the second reply")
    await sweep_until(
        stack, sessions, clock, lambda: len(receiver.accepted()) == 5, step=backoff(6)
    )
    later = receiver.accepted()[3:]
    assert [e["type"] for e in later] == ["message.received", "message.sent"]
    assert later[0]["data"]["message"]["text"] == "Vocês abrem sábado?"
    assert len(receiver.received) == 5 + 6  # every failure was retried, none dropped
    ids = [e["id"] for e in receiver.accepted()]
    assert len(set(ids)) == 5
