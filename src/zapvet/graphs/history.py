"""Conversation history for the agents: stored messages in, a clean LangChain message list out.

Only text turns are stored, so history never carries tool calls; `trim` still guarantees
what the OpenAI API demands (no tool message without its call, no call without results)
in case a caller hands in tool messages.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.models import Message

HISTORY_LIMIT = 20
STAFF_PREFIX = "[mensagem de uma pessoa da equipe] "


def to_langchain(rows: Sequence[Message]) -> list[BaseMessage]:
    """Incoming rows become human turns, outgoing rows assistant turns (staff ones marked)."""
    messages: list[BaseMessage] = []
    for row in rows:
        if row.deleted_at is not None:
            continue
        if row.direction == "incoming":
            messages.append(HumanMessage(row.content, id=f"db-{row.id}"))
        elif row.sent_by_ai:
            messages.append(AIMessage(row.content, id=f"db-{row.id}"))
        else:
            messages.append(AIMessage(STAFF_PREFIX + row.content, id=f"db-{row.id}"))
    return messages


def trim(messages: Sequence[BaseMessage], limit: int = HISTORY_LIMIT) -> list[BaseMessage]:
    """The last `limit` messages, starting at a human turn, with no orphaned tool traffic."""
    kept = list(messages[-limit:]) if limit else []
    answered = {m.tool_call_id for m in kept if isinstance(m, ToolMessage)}
    clean: list[BaseMessage] = []
    called: set[str] = set()
    for message in kept:
        if isinstance(message, AIMessage) and message.tool_calls:
            if not all(call["id"] in answered for call in message.tool_calls):
                continue  # a call whose results were cut off
            called.update(call["id"] or "" for call in message.tool_calls)
        if isinstance(message, ToolMessage) and message.tool_call_id not in called:
            continue  # a result whose call was cut off
        clean.append(message)
    while clean and not isinstance(clean[0], HumanMessage):
        clean.pop(0)
    return clean


async def load_history(
    session: AsyncSession, *, organization_id: int, conversation_id: int, limit: int = HISTORY_LIMIT
) -> list[BaseMessage]:
    """The conversation's last `limit` stored messages as LangChain messages, oldest first."""
    rows = await session.exec(
        select(Message)
        .where(
            Message.organization_id == organization_id,
            Message.conversation_id == conversation_id,
            col(Message.deleted_at).is_(None),
        )
        .order_by(col(Message.message_at).desc(), col(Message.id).desc())
        .limit(limit)
    )
    return trim(to_langchain(list(reversed(list(rows)))), limit)
