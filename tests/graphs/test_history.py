"""History handed to the model: the last 20 messages, never an orphan tool message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from sqlmodel import Session

from zapvet.graphs.history import STAFF_PREFIX, load_history, to_langchain, trim
from zapvet.models import Message
from zapvet.tools.context import ClientContext
from zapvet.tools.deps import ToolDeps


def tool_call(call_id: str) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": "list_services", "args": {}, "id": call_id}])


def test_trim_keeps_the_last_messages_starting_with_a_human_turn() -> None:
    messages = [HumanMessage(f"h{i}") if i % 2 == 0 else AIMessage(f"a{i}") for i in range(30)]
    kept = trim(messages, 20)
    assert len(kept) == 20 and kept[0].content == "h10" and kept[-1].content == "a29"
    assert isinstance(trim(messages, 19)[0], HumanMessage)  # "a11" dropped: start on a human


def test_trim_drops_tool_messages_whose_call_was_cut_off() -> None:
    messages = [
        HumanMessage("oi"),
        tool_call("c1"),
        ToolMessage("catálogo", tool_call_id="c1"),
        AIMessage("Temos banho."),
        HumanMessage("e tosa?"),
    ]
    kept = trim(messages, 3)  # cuts between the call and its result
    assert [type(m).__name__ for m in kept] == ["HumanMessage"]
    assert not any(isinstance(m, ToolMessage) for m in trim(messages, 4))


def test_trim_drops_calls_whose_results_are_missing() -> None:
    messages = [HumanMessage("oi"), tool_call("c9"), HumanMessage("alô?")]
    assert [m.content for m in trim(messages, 20)] == ["oi", "alô?"]


def test_trim_keeps_complete_call_and_result_pairs() -> None:
    messages = [
        HumanMessage("oi"),
        tool_call("c1"),
        ToolMessage("ok", tool_call_id="c1"),
        AIMessage("pronto"),
    ]
    assert trim(messages, 20) == messages


@pytest.mark.anyio
async def test_load_history_reads_the_conversation_in_order(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    start = datetime(2026, 11, 25, 12, tzinfo=UTC)
    for index in range(25):
        session.add(
            Message(
                organization_id=client_context.organization_id,
                conversation_id=client_context.conversation_id,
                direction="incoming" if index % 2 == 0 else "outgoing",
                sent_by_ai=index % 4 == 1,
                status="processed" if index % 2 == 0 else "sent",
                from_me=index % 2 == 1,
                content=f"m{index}",
                message_at=start + timedelta(minutes=index),
                deleted_at=start if index == 24 else None,
            )
        )
    session.commit()
    async with deps.sessions() as async_session:
        history = await load_history(
            async_session,
            organization_id=client_context.organization_id,
            conversation_id=client_context.conversation_id,
        )
    assert len(history) <= 20 and isinstance(history[0], HumanMessage)
    assert history[-1].content == STAFF_PREFIX + "m23"  # m24 was deleted; m23 came from staff
    assert history[-2].content == "m22"
    assert [m.content for m in history if isinstance(m, AIMessage)][-2] == "m21"


@pytest.mark.anyio
async def test_load_history_puts_the_turns_pending_messages_last_and_leaves_later_ones_out(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    second = datetime(2026, 11, 25, 12, 0, 10, tzinfo=UTC)

    def row(content: str, direction: str, status: str, at: datetime) -> Message:
        return Message(
            organization_id=client_context.organization_id,
            conversation_id=client_context.conversation_id,
            direction=direction,  # type: ignore[arg-type]
            status=status,  # type: ignore[arg-type]
            sent_by_ai=direction == "outgoing",
            content=content,
            message_at=at,
        )

    # WhatsApp stamps whole seconds: the new message looks older than the reply before it.
    rows = [
        row("oi", "incoming", "processed", second),
        row("olá!", "outgoing", "sent", second + timedelta(milliseconds=700)),
        row("quero banho", "incoming", "pending", second),
        row("e tosa", "incoming", "pending", second + timedelta(seconds=1)),
    ]
    session.add_all(rows)
    session.commit()
    async with deps.sessions() as async_session:
        everything = await load_history(
            async_session,
            organization_id=client_context.organization_id,
            conversation_id=client_context.conversation_id,
        )
        batch_only = await load_history(
            async_session,
            organization_id=client_context.organization_id,
            conversation_id=client_context.conversation_id,
            batch={rows[2].id or 0},
        )
    assert [m.content for m in everything] == ["oi", "olá!", "quero banho", "e tosa"]
    assert [m.content for m in batch_only] == ["oi", "olá!", "quero banho"]


@pytest.mark.anyio
async def test_a_batch_older_than_the_newest_messages_is_still_its_turns_history(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    # A flood trimmed by [limits]: the turn answers the oldest three of 30 pending messages,
    # and the 27 newer ones (more than the history holds) wait for later turns.
    start = datetime(2026, 11, 25, 12, tzinfo=UTC)
    rows = [
        Message(
            organization_id=client_context.organization_id,
            conversation_id=client_context.conversation_id,
            direction="incoming",
            status="pending",
            content=f"m{index}",
            message_at=start + timedelta(seconds=index),
        )
        for index in range(30)
    ]
    session.add_all(rows)
    session.commit()
    async with deps.sessions() as async_session:
        history = await load_history(
            async_session,
            organization_id=client_context.organization_id,
            conversation_id=client_context.conversation_id,
            batch={row.id or 0 for row in rows[:3]},
        )
    assert [m.content for m in history] == ["m0", "m1", "m2"]


def test_to_langchain_leaves_out_what_a_blocked_contact_sent() -> None:
    at = datetime(2026, 11, 25, 12, tzinfo=UTC)
    rows = [
        Message(id=1, organization_id=1, conversation_id=1, direction="incoming",
                status="ignored", content="spam", message_at=at, meta={"blocked": True}),
        Message(id=2, organization_id=1, conversation_id=1, direction="incoming",
                status="pending", content="oi de novo", message_at=at),
    ]  # fmt: skip
    assert [m.content for m in to_langchain(rows)] == ["oi de novo"]
