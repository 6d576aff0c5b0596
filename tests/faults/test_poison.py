"""Fault (g): a message whose turn kills its worker process.

Dramatiq's own poison guard counts deliveries of one queue message, but the sweeper
re-enqueues a stuck conversation as a new queue message every time, so only a count kept
on the rows themselves stops the loop: after MAX_TURN_STARTS turns that never finished,
the batch gets the fallback reply, is marked failed, and an error is recorded. The same
with real worker processes dying by `os._exit`, redelivered by the sweeper, is measured
by `python -m bench.faults --only poison` (it restarts workers; too slow for the suite).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain_openai import ChatOpenAI
from sqlalchemy import Engine
from sqlmodel import Session

from tests.conftest import start_conversation
from tests.faults.harness import (
    POISON,
    echo_reply,
)
from tests.pipeline.conftest import rows
from tests.pipeline.support import Recorder, await_until
from zapvet.graphs.loop import FALLBACK_REPLY
from zapvet.models import Message, Organization
from zapvet.queue.drain import MAX_TURN_STARTS, Outcome, drain_conversation
from zapvet.queue.gate import TurnGate
from zapvet.queue.resources import Resources, build_resources
from zapvet.testing.openai_server import FakeOpenAIServer, Reply

ANA = "5511970005555"


def hangs_on_poison(body: dict[str, Any]) -> Reply:
    """Echo, except that a turn carrying the poison never gets its answer."""
    reply = echo_reply(body)
    return Reply(text=reply.text, delay=3600) if POISON in (reply.text or "") else reply


@pytest.fixture
def hanging_model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(responder=hangs_on_poison) as server:
        yield server


@pytest.fixture
async def resources(database_url: str, hanging_model: FakeOpenAIServer) -> AsyncIterator[Resources]:
    model = ChatOpenAI(model="gpt-4o-mini", api_key="test-key", base_url=hanging_model.base_url)  # type: ignore[arg-type]
    res = build_resources(database_url, lambda: model, pool_size=4)
    yield res
    await res.close()


async def dies_mid_turn(
    resources: Resources, queue: Recorder, conversation_id: int, model: FakeOpenAIServer
) -> None:
    """A drain whose worker dies while the model is thinking: nothing after it runs."""
    asked = len(model.requests)
    turn = asyncio.create_task(drain_conversation(resources, queue, conversation_id))
    await await_until(lambda: len(model.requests) > asked, what="the turn to reach the model")
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn


def incoming(session: Session, org: Organization, conversation_id: int, text: str) -> None:
    now = datetime.now(UTC) - timedelta(minutes=1)  # past the debounce window
    session.add(
        Message(
            organization_id=org.id or 0,
            conversation_id=conversation_id,
            direction="incoming",
            content=text,
            status="pending",
            message_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    session.commit()


@pytest.mark.anyio
async def test_poison_a_turn_that_keeps_dying_is_given_up_with_the_fallback(
    resources: Resources,
    hanging_model: FakeOpenAIServer,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    incoming(session, petfeliz, conversation_id, f"{POISON} quebra tudo")
    queue = Recorder()
    for _ in range(MAX_TURN_STARTS):  # each redelivery (or sweep) dies mid-turn again
        await dies_mid_turn(resources, queue, conversation_id, hanging_model)
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.GAVE_UP
    assert len(hanging_model.requests) == MAX_TURN_STARTS  # the model was not asked again
    assert rows(engine, "SELECT status FROM messages WHERE direction='incoming'") == [("failed",)]
    assert rows(engine, "SELECT content FROM messages WHERE direction='outgoing'") == [
        (FALLBACK_REPLY,)
    ]
    assert len(queue.sends) == 1
    ((status, error),) = rows(engine, "SELECT status, error_message FROM ai_interactions")
    assert status == "error" and f"started {MAX_TURN_STARTS} times" in str(error)

    incoming(session, petfeliz, conversation_id, "oi de novo")  # the conversation goes on
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED
    assert len(queue.sends) == 2


@pytest.mark.anyio
async def test_poison_a_suspect_turn_runs_alone_in_its_process() -> None:
    """If a suspect batch kills its process again, no innocent turn dies with it."""
    gate = TurnGate()
    seen: list[str] = []

    async def turn(name: str, *, alone: bool) -> None:
        async with gate.enter(alone=alone):
            seen.append(f"+{name}")
            await asyncio.sleep(0.05)
            seen.append(f"-{name}")

    await asyncio.gather(
        turn("a", alone=False),
        turn("b", alone=False),
        turn("suspect", alone=True),
        turn("c", alone=False),  # arrives after the suspect: waits for it
    )
    assert seen.index("-suspect") == seen.index("+suspect") + 1
    assert seen.index("+suspect") > max(seen.index("-a"), seen.index("-b"))
    assert seen.index("+c") > seen.index("-suspect")
