"""`[limits]`: what the AI answers per contact and per organization, and nothing lost.

Each test drains real rows with the echo model and a clock it moves; the limits are set
in `ai_settings` the way `zapvet org apply` writes them (the configuration version moves,
so the worker's cache reloads at the next turn, without a restart).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from tests.conftest import start_conversation
from tests.pipeline.conftest import echo, rows
from tests.pipeline.support import Recorder
from tests.pipeline.test_drain_rounds import text_from
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import Message, Organization
from zapvet.queue.drain import (
    DAY_LIMIT_REPLY,
    MINUTE_LIMIT_NOTICE,
    Outcome,
    drain_conversation,
)
from zapvet.queue.resources import Resources, build_resources

pytestmark = pytest.mark.anyio
ANA, BIA = "5511970007777", "5511970008888"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def model() -> ScriptedChatModel:
    return ScriptedChatModel(responder=echo)


@pytest.fixture
async def resources(
    database_url: str, model: ScriptedChatModel, clock: Clock
) -> AsyncIterator[Resources]:
    res = build_resources(database_url, lambda: model, pool_size=4, clock=clock)
    res.send_inline = False  # the send jobs are recorded, not run
    yield res
    await res.close()


def limit(engine: Engine, **values: int) -> None:
    sets = ", ".join(f"{name} = :{name}" for name in values)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE ai_settings SET {sets}"), values)


def answered(model: ScriptedChatModel) -> list[str]:
    """The customer texts each model call addressed, per call."""
    return [str(call["messages"][-1].content) for call in model.calls]


def escalation(engine: Engine, conversation_id: int) -> tuple[object, ...]:
    """The conversation's status and escalation reason."""
    query = "SELECT status, escalation_reason FROM conversations WHERE id = :id"
    (row,) = rows(engine, query, id=conversation_id)
    return row


def replies(engine: Engine) -> list[str]:
    return [
        str(row[0]).split(": ", 1)[-1]
        for row in rows(
            engine, "SELECT content FROM messages WHERE direction='outgoing' ORDER BY id"
        )
    ]


async def test_past_the_per_minute_limit_one_notice_then_the_rest_in_order(
    resources: Resources,
    model: ScriptedChatModel,
    clock: Clock,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    limit(engine, contact_messages_per_minute=2)
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    for text_ in ("um", "dois", "três", "quatro"):
        text_from(session, petfeliz, conversation_id, text_)
    queue = Recorder()

    # Room for two this minute: one turn answers the oldest two; the rest waits, with one
    # notice, and the drain looks again later.
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.DEFERRED
    assert len(model.calls) == 1
    assert replies(engine) == ["um | dois", MINUTE_LIMIT_NOTICE]
    assert queue.drains == [conversation_id]
    pending = (
        "SELECT content FROM messages WHERE direction = 'incoming' AND status = 'pending'"
        " ORDER BY id"
    )
    assert rows(engine, pending) == [("três",), ("quatro",)]

    # Still within the minute: no second notice, no model call.
    clock.now += timedelta(seconds=20)
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.DEFERRED
    assert len(model.calls) == 1
    assert replies(engine) == ["um | dois", MINUTE_LIMIT_NOTICE]

    # The window reopens: the rest is answered, in order, as one turn.
    clock.now += timedelta(seconds=45)
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED
    assert replies(engine) == ["um | dois", MINUTE_LIMIT_NOTICE, "três | quatro"]
    assert rows(engine, pending) == []


async def test_a_flood_after_the_notice_gets_no_second_notice_within_the_minute(
    resources: Resources,
    model: ScriptedChatModel,
    clock: Clock,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    # More messages after the notice than the history the drain reads with a batch: the
    # notice is found by its own look-up, not among the batch's recent rows.
    limit(engine, contact_messages_per_minute=3)
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    for index in range(5):
        text_from(session, petfeliz, conversation_id, f"m{index}")
    queue = Recorder()
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.DEFERRED
    assert replies(engine).count(MINUTE_LIMIT_NOTICE) == 1
    for index in range(5, 30):
        text_from(session, petfeliz, conversation_id, f"m{index}")
    clock.now += timedelta(seconds=20)
    with engine.begin() as conn:  # they came after the notice (past the debounce by now)
        later = (
            "UPDATE messages SET message_at = :at, created_at = :at"
            " WHERE status = 'pending' AND direction = 'incoming'"
        )
        conn.execute(text(later), {"at": clock.now - timedelta(seconds=10)})
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.DEFERRED
    assert replies(engine).count(MINUTE_LIMIT_NOTICE) == 1
    assert len(model.calls) == 1
    clock.now += timedelta(seconds=45)  # the window reopens: a turn, then the next notice
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.DEFERRED
    assert replies(engine).count(MINUTE_LIMIT_NOTICE) == 2
    assert replies(engine)[-2] == "m3 | m4 | m5"  # the oldest three, though 24 are newer


async def test_raising_a_limit_applies_at_the_next_turn(
    resources: Resources,
    model: ScriptedChatModel,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    limit(engine, contact_messages_per_minute=1)
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    text_from(session, petfeliz, conversation_id, "um")
    text_from(session, petfeliz, conversation_id, "dois")
    queue = Recorder()
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.DEFERRED
    assert replies(engine) == ["um", MINUTE_LIMIT_NOTICE]

    limit(engine, contact_messages_per_minute=5)  # same process, same cache: no restart
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED
    assert replies(engine) == ["um", MINUTE_LIMIT_NOTICE, "dois"]


async def test_past_the_daily_limit_the_conversation_goes_to_a_person(
    resources: Resources,
    model: ScriptedChatModel,
    clock: Clock,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    limit(engine, contact_messages_per_day=2)
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    queue = Recorder()
    for text_ in ("um", "dois"):
        text_from(session, petfeliz, conversation_id, text_)
        assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED
        clock.now += timedelta(minutes=2)
    text_from(session, petfeliz, conversation_id, "três")
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED

    assert len(model.calls) == 2  # the third message never reached the model
    assert replies(engine) == ["um", "dois", DAY_LIMIT_REPLY]
    status, reason = escalation(engine, conversation_id)
    assert status == "escalated" and "limite diário" in str(reason)
    assert rows(
        engine, "SELECT count(*) FROM messages WHERE direction = 'incoming' AND status = 'pending'"
    ) == [(0,)]
    assert queue.proactive_ids  # the staff alert of the escalation


async def test_past_the_organizations_turns_per_minute_other_turns_wait(
    resources: Resources,
    model: ScriptedChatModel,
    clock: Clock,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    limit(engine, org_turns_per_minute=1)
    ana = start_conversation(session, petfeliz, ANA).conversation_id
    bia = start_conversation(session, petfeliz, BIA).conversation_id
    text_from(session, petfeliz, ana, "oi da Ana")
    text_from(session, petfeliz, bia, "oi da Bia")
    queue = Recorder()
    assert await drain_conversation(resources, queue, ana) is Outcome.ANSWERED
    assert await drain_conversation(resources, queue, bia) is Outcome.DEFERRED
    assert len(model.calls) == 1 and queue.drains == [bia]
    waiting = "SELECT content FROM messages WHERE direction = 'incoming' AND status = 'pending'"
    assert rows(engine, waiting) == [("oi da Bia",)]
    # The turns are stamped by the database's clock, the window by the drain's: a minute
    # before the drain's now there is room again.
    with engine.begin() as conn:
        before = clock.now - timedelta(seconds=61)
        conn.execute(text("UPDATE ai_interactions SET created_at = :at"), {"at": before})
    assert await drain_conversation(resources, queue, bia) is Outcome.ANSWERED
    assert replies(engine) == ["oi da Ana", "oi da Bia"]


def exchanges(
    session: Session, org: Organization, conversation_id: int, count: int, gap: timedelta
) -> None:
    """`count` answered exchanges, each of our replies answered `gap` later, then a new
    message `gap` after the last reply (the batch the drain takes)."""
    at = datetime.now(UTC) - timedelta(minutes=10)
    for n in range(count):
        session.add(incoming_row(org, conversation_id, f"msg {n}", at, status="processed"))
        at += timedelta(seconds=30)
        session.add(
            Message(
                organization_id=org.id or 0,
                conversation_id=conversation_id,
                direction="outgoing",
                content=f"resposta {n}",
                sent_by_ai=True,
                from_me=True,
                status="sent",
                message_at=at,
                created_at=at,
                updated_at=at,
            )
        )
        at += gap
    session.add(incoming_row(org, conversation_id, "de novo", at, status="pending"))
    session.commit()


def incoming_row(
    org: Organization, conversation_id: int, content: str, at: datetime, *, status: str
) -> Message:
    return Message(
        organization_id=org.id or 0,
        conversation_id=conversation_id,
        direction="incoming",
        content=content,
        status=status,
        message_at=at,
        created_at=at,
        updated_at=at,
        processed_at=at if status == "processed" else None,
    )


async def test_a_loop_with_another_bot_goes_to_a_person_without_a_reply(
    resources: Resources,
    model: ScriptedChatModel,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    limit(engine, bot_loop_exchanges=3)
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    # Three exchanges answered within a second of each reply; the fourth message comes as fast.
    exchanges(session, petfeliz, conversation_id, 3, timedelta(seconds=1))
    queue = Recorder()
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED
    assert model.calls == []  # nothing more for the other bot to answer
    outgoing = "SELECT count(*) FROM messages WHERE direction = 'outgoing'"
    assert rows(engine, outgoing) == [(3,)]
    status, reason = escalation(engine, conversation_id)
    assert status == "escalated" and "outro robô" in str(reason)
    assert queue.proactive_ids  # the staff are alerted


async def test_a_person_who_takes_time_to_answer_is_not_a_bot(
    resources: Resources,
    model: ScriptedChatModel,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    limit(engine, bot_loop_exchanges=3)
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    exchanges(session, petfeliz, conversation_id, 3, timedelta(seconds=20))
    queue = Recorder()
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED
    assert len(model.calls) == 1
    assert rows(engine, "SELECT status FROM conversations") == [("active",)]
