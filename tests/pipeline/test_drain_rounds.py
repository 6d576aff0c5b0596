"""What one drain job does with messages that arrive while it holds the conversation, and
where a turn's usage row goes when its reply cannot be stored.

A message stored while a drain holds the conversation (after its commit, while it sends
the reply) gets its own drain job, which is refused (BUSY); the holder answers it after
letting go, as a second round of the same job, instead of enqueueing a third job. The
turn's `ai_interactions` row is written with its reply, in one transaction, and on its own
when that transaction does not commit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain_openai import ChatOpenAI
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from tests.conftest import start_conversation
from tests.faults.harness import echo_reply
from tests.faults.test_poison import incoming
from tests.pipeline.conftest import rows
from tests.pipeline.support import Recorder, await_until
from zapvet.models import Message, Organization, WhatsAppInstance
from zapvet.queue.drain import Outcome, drain_conversation
from zapvet.queue.resources import Resources, build_resources
from zapvet.testing.gateways import FakeEvolutionAPI, SentText
from zapvet.testing.openai_server import FakeOpenAIServer, Reply

pytestmark = pytest.mark.anyio
ANA = "5511970006666"


class HeldModel:
    """Echoes; the first request waits until `release` is set (the turn is "thinking"), and
    `during_first` runs while it waits."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.during_first: Any = None
        self.calls = 0

    def __call__(self, body: dict[str, Any]) -> Reply:
        self.calls += 1
        if self.calls == 1:
            if self.during_first is not None:
                self.during_first()
            assert self.release.wait(30), "the test never released the first turn"
        return echo_reply(body)


@pytest.fixture
def held() -> HeldModel:
    return HeldModel()


@pytest.fixture
def server(held: HeldModel) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(responder=held) as running:
        yield running


@pytest.fixture
async def resources(database_url: str, server: FakeOpenAIServer) -> AsyncIterator[Resources]:
    model = ChatOpenAI(model="gpt-4o-mini", api_key="test-key", base_url=server.base_url)  # type: ignore[arg-type]
    res = build_resources(database_url, lambda: model, pool_size=4)
    yield res
    await res.close()


def text_from(session: Session, org: Organization, conversation_id: int, content: str) -> None:
    """An incoming text from ANA's chat on the organization's instance, past the debounce."""
    now = datetime.now(UTC) - timedelta(minutes=1)
    instance_id = session.exec(
        select(WhatsAppInstance.id).where(WhatsAppInstance.organization_id == org.id)
    ).one()
    session.add(
        Message(
            organization_id=org.id or 0,
            conversation_id=conversation_id,
            instance_id=instance_id,
            chat_id=f"{ANA}@s.whatsapp.net",
            direction="incoming",
            content=content,
            status="pending",
            message_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    session.commit()


async def test_a_message_stored_while_the_drain_sends_is_answered_by_that_job(
    resources: Resources,
    held: HeldModel,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    """The second message lands after the first turn's commit, while its reply is being
    sent (the drain still holds the conversation): its own drain is refused, and the
    holder answers it once it lets go, without a new job."""
    held.release.set()
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    arrived, proceed = threading.Event(), threading.Event()

    def second_message_during_the_first_send(sent: SentText) -> None:
        if arrived.is_set():
            return
        text_from(Session(engine), petfeliz, conversation_id, "É para o Rex")
        arrived.set()
        assert proceed.wait(30), "the test never let the first send finish"

    gateway = FakeEvolutionAPI(
        api_key="evo-secret", instances=["petfeliz"], on_send=second_message_during_the_first_send
    )
    gateway.start()
    try:
        with engine.begin() as conn:  # the configuration version moves: the cache reloads
            conn.execute(
                text("UPDATE whatsapp_instances SET api_url = :url"), {"url": gateway.base_url}
            )
        text_from(session, petfeliz, conversation_id, "Oi, tem horário amanhã?")
        queue = Recorder()
        first = asyncio.create_task(drain_conversation(resources, queue, conversation_id))
        await await_until(arrived.is_set, what="the first reply at the gateway")
        assert await drain_conversation(resources, queue, conversation_id) is Outcome.BUSY
        proceed.set()
        assert await asyncio.wait_for(first, 30) is Outcome.ANSWERED
        await await_until(lambda: len(gateway.sent) == 2, what="the second reply")
    finally:
        proceed.set()
        gateway.stop()

    assert [sent.text.split(": ", 1)[1] for sent in gateway.sent] == [
        "Oi, tem horário amanhã?",
        "É para o Rex",
    ]
    assert rows(engine, "SELECT status FROM messages ORDER BY id") == [
        ("processed",), ("sent",), ("processed",), ("sent",)
    ]  # fmt: skip
    assert queue.drains == []  # no third job: the holder answered the second message itself
    assert queue.sends == []  # both went out from the drain, no send job
    assert rows(engine, "SELECT count(*) FROM ai_interactions") == [(2,)]


async def test_a_turn_whose_messages_changed_under_it_still_records_its_usage(
    resources: Resources,
    held: HeldModel,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    incoming(session, petfeliz, conversation_id, "Oi")

    def answered_elsewhere() -> None:  # another drain (after a lost lock) took the message
        with engine.begin() as conn:
            conn.execute(text("UPDATE messages SET status = 'processed' WHERE status = 'pending'"))
        held.release.set()

    held.during_first = answered_elsewhere
    queue = Recorder()
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.RACED
    assert rows(engine, "SELECT count(*) FROM messages WHERE direction='outgoing'") == [(0,)]
    # The model was called and its tokens spent: the row is there though the reply is not.
    assert rows(engine, "SELECT status, input_tokens > 0 FROM ai_interactions") == [
        ("success", True)
    ]


async def test_a_contact_blocked_after_writing_is_never_answered(
    resources: Resources,
    server: FakeOpenAIServer,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    """Its messages were stored (and their drain queued) before the block: the drain closes
    them as the bridge would have, without a turn."""
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    incoming(session, petfeliz, conversation_id, "Oi")
    with engine.begin() as conn:
        conn.execute(text("UPDATE contacts SET status = 'blocked'"))
    queue = Recorder()
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.BLOCKED
    assert server.requests == []
    assert rows(engine, "SELECT status, meta->>'blocked' FROM messages") == [("ignored", "true")]
    assert (queue.drains, queue.sends) == ([], [])
