"""`[limits] monthly_budget_brl`: the owners are told at 80 % and 100 %, once; past the budget
customers' turns get `over_budget` without the model, and raising it resumes at once.

Each test drains real rows with the echo model (whose turns cost nothing: its model is not
priced) after storing the month's spend as `ai_interactions` rows of a priced model: one
million gpt-4o-mini output tokens at the example's prices cost R$ 3,24. The budget is set in
`ai_settings` the way `zapvet org apply` writes it, so the configuration version moves and
the worker sees it at its next turn.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from tests.conftest import start_conversation
from tests.pipeline.conftest import rows
from tests.pipeline.support import Recorder
from tests.pipeline.test_drain_rounds import text_from
from tests.pipeline.test_limits import clock, escalation, model, replies, resources
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import (
    AIInteraction,
    AuroraOwnerNumber,
    Contact,
    ContactIdentity,
    Conversation,
    Organization,
)
from zapvet.queue.budget import Budgets
from zapvet.queue.drain import (
    BUDGET_FALLBACK_REPLY,
    BUDGET_HANDOFF_REPLY,
    Outcome,
    drain_conversation,
)
from zapvet.queue.resources import Resources

__all__ = ["clock", "model", "resources"]  # the limits tests' fixtures, shared
pytestmark = pytest.mark.anyio
ANA, BIA = "5511970007777", "5511970008888"
#: The month's spend each test stores: R$ 3,24.
SPENT_CENTS = 324


def budget(engine: Engine, cents: int | None, over_budget: str = "hand_to_human") -> None:
    query = "UPDATE ai_settings SET monthly_budget_cents = :cents, over_budget = :over"
    with engine.begin() as conn:
        conn.execute(text(query), {"cents": cents, "over": over_budget})


def spend(session: Session, org: Organization) -> None:
    """This month's AI cost so far: R$ 3,24 (`SPENT_CENTS`)."""
    session.add(
        AIInteraction(
            organization_id=org.id or 0,
            ai_type="client",
            status="success",
            model="gpt-4o-mini",
            output_tokens=1_000_000,
        )
    )
    session.commit()


def alerts(engine: Engine) -> list[tuple[object, ...]]:
    """The budget alerts queued for the owners: (id, text)."""
    query = (
        "SELECT id, content FROM aurora_proactive_messages"
        " WHERE message_type = 'budget_alert' ORDER BY id"
    )
    return rows(engine, query)


def still_pending(engine: Engine) -> int:
    query = "SELECT count(*) FROM messages WHERE direction = 'incoming' AND status = 'pending'"
    return int(str(rows(engine, query)[0][0]))


async def test_past_80_percent_the_owner_is_told_once_and_the_model_still_answers(
    resources: Resources,
    model: ScriptedChatModel,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    budget(engine, 400)  # R$ 3,24 of R$ 4,00: 81 %
    spend(session, petfeliz)
    queue = Recorder()
    for phone in (ANA, BIA):
        conversation_id = start_conversation(session, petfeliz, phone).conversation_id
        text_from(session, petfeliz, conversation_id, f"oi de {phone}")
        assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED

    assert len(model.calls) == 2
    ((alert_id, content),) = alerts(engine)  # one owner, one alert for two turns past 80 %
    assert "R$ 3,24 de R$ 4,00" in str(content) and "81%" in str(content)
    assert queue.proactive_ids == [alert_id]
    assert resources.budgets.reads == 1  # the second turn used the process's figure


async def test_at_the_budget_hand_to_human_escalates_with_a_notice_and_no_model_call(
    resources: Resources,
    model: ScriptedChatModel,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    budget(engine, SPENT_CENTS)  # spent exactly the budget: reached
    spend(session, petfeliz)
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    text_from(session, petfeliz, conversation_id, "quero marcar um banho")
    queue = Recorder()
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED

    assert model.calls == []
    assert replies(engine) == [BUDGET_HANDOFF_REPLY]
    status, reason = escalation(engine, conversation_id)
    assert status == "escalated" and "orçamento mensal de IA" in str(reason)
    assert still_pending(engine) == 0  # stored and processed: a person continues from here
    ((alert_id, content),) = alerts(engine)
    assert "atingido: R$ 3,24 de R$ 3,24" in str(content)
    assert alert_id in queue.proactive_ids  # with the escalation's own staff alert
    assert len(queue.proactive_ids) == 2

    # The conversation is a person's now: later messages are stored, never answered.
    text_from(session, petfeliz, conversation_id, "alô?")
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.PAUSED
    assert model.calls == [] and replies(engine) == [BUDGET_HANDOFF_REPLY]
    assert still_pending(engine) == 0


async def test_past_the_budget_fallback_only_answers_a_fixed_text_without_the_model(
    resources: Resources,
    model: ScriptedChatModel,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    budget(engine, 300, "fallback_only")
    spend(session, petfeliz)
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    queue = Recorder()
    for text_ in ("oi", "tem horário amanhã?"):
        text_from(session, petfeliz, conversation_id, text_)
        assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED

    assert model.calls == []
    assert replies(engine) == [BUDGET_FALLBACK_REPLY, BUDGET_FALLBACK_REPLY]
    assert escalation(engine, conversation_id)[0] == "active"
    assert still_pending(engine) == 0
    ((alert_id, content),) = alerts(engine)  # told once, not per turn
    assert "resposta fixa" in str(content)
    assert queue.proactive_ids == [alert_id]


async def test_raising_the_budget_resumes_the_model_at_the_next_turn(
    resources: Resources,
    model: ScriptedChatModel,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    budget(engine, 300, "fallback_only")
    spend(session, petfeliz)
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    queue = Recorder()
    text_from(session, petfeliz, conversation_id, "oi")
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED
    assert model.calls == []

    budget(engine, 100_000, "fallback_only")  # same process, same caches: no restart
    text_from(session, petfeliz, conversation_id, "e agora?")
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED
    assert len(model.calls) == 1
    assert replies(engine) == [BUDGET_FALLBACK_REPLY, "e agora?"]


def owner_conversation(session: Session, org: Organization) -> int:
    """A conversation with the example's owner number (Aurora answers it)."""
    owner = session.exec(
        select(AuroraOwnerNumber).where(AuroraOwnerNumber.organization_id == org.id)
    ).one()
    contact = Contact(organization_id=org.id or 0, phone=owner.phone, name=owner.name)
    session.add(contact)
    session.flush()
    session.add(
        ContactIdentity(
            organization_id=org.id or 0,
            contact_id=contact.id or 0,
            kind="phone",
            value=owner.phone_key,
        )
    )
    conversation = Conversation(organization_id=org.id or 0, contact_id=contact.id or 0)
    session.add(conversation)
    session.commit()
    return conversation.id or 0


async def test_the_owner_still_talks_to_aurora_past_the_budget(
    resources: Resources,
    model: ScriptedChatModel,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    budget(engine, 100)
    spend(session, petfeliz)
    conversation_id = owner_conversation(session, petfeliz)
    text_from(session, petfeliz, conversation_id, "quanto gastei de IA este mês?")
    queue = Recorder()
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED
    assert len(model.calls) == 1
    assert replies(engine) == ["quanto gastei de IA este mês?"]
    assert escalation(engine, conversation_id)[0] == "active"
    assert resources.budgets.reads == 0  # an owner's turn never looks at the budget


async def test_a_new_process_does_not_tell_the_owner_again(
    resources: Resources,
    model: ScriptedChatModel,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    budget(engine, 300, "fallback_only")
    spend(session, petfeliz)
    queue = Recorder()
    ana = start_conversation(session, petfeliz, ANA).conversation_id
    text_from(session, petfeliz, ana, "oi")
    assert await drain_conversation(resources, queue, ana) is Outcome.ANSWERED
    assert len(alerts(engine)) == 1 and len(queue.proactive_ids) == 1

    # A restarted worker (or another one) knows nothing of the first: PostgreSQL does.
    resources.budgets = Budgets()
    bia = start_conversation(session, petfeliz, BIA).conversation_id
    text_from(session, petfeliz, bia, "olá")
    assert await drain_conversation(resources, queue, bia) is Outcome.ANSWERED
    assert resources.budgets.reads == 1
    assert replies(engine) == [BUDGET_FALLBACK_REPLY, BUDGET_FALLBACK_REPLY]
    assert len(alerts(engine)) == 1 and len(queue.proactive_ids) == 1


async def test_below_80_percent_nothing_changes(
    resources: Resources,
    model: ScriptedChatModel,
    session: Session,
    petfeliz: Organization,
    engine: Engine,
) -> None:
    budget(engine, 1_000)  # R$ 3,24 of R$ 10,00
    spend(session, petfeliz)
    conversation_id = start_conversation(session, petfeliz, ANA).conversation_id
    text_from(session, petfeliz, conversation_id, "oi")
    queue = Recorder()
    assert await drain_conversation(resources, queue, conversation_id) is Outcome.ANSWERED
    assert len(model.calls) == 1 and alerts(engine) == [] and queue.proactive_ids == []
