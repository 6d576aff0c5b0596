"""Conversation history for the agents: stored messages in, a clean LangChain message list out.

Only text turns are stored, so history never carries tool calls; `trim` still guarantees
what the OpenAI API demands (no tool message without its call, no call without results)
in case a caller hands in tool messages.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.models import Message

HISTORY_LIMIT = 20
STAFF_PREFIX = "[mensagem de uma pessoa da equipe] "


_MEDIA = {
    "audio": "um áudio{seconds} (você ainda não consegue ouvir áudios: peça para escrever)",
    "image": "uma imagem (você ainda não consegue ver imagens)",
    "video": "um vídeo (você ainda não consegue ver vídeos)",
    "document": "um documento{name} (você ainda não consegue abrir documentos)",
    "sticker": "uma figurinha",
    "location": "uma localização{place}",
    "contact": "um contato",
}


def describe(row: Message) -> str:
    """The text the agent reads for a stored message: media become an honest description."""
    if row.message_type in ("text", "interactive"):
        return row.content
    meta = (row.meta or {}).get("media") or {}
    seconds = f" de {meta['seconds']} s" if meta.get("seconds") else ""
    name = f" ({meta['file_name']})" if meta.get("file_name") else ""
    place = (
        f" ({meta.get('name') or meta.get('address')})"
        if meta.get("name") or meta.get("address")
        else ""
    )
    what = _MEDIA.get(row.message_type, "uma mensagem de um tipo que você não consegue ler")
    text = f"[O cliente enviou {what.format(seconds=seconds, name=name, place=place)}.]"
    return f"{text} Legenda: {row.content}" if row.content else text


def to_langchain(rows: Sequence[Message]) -> list[BaseMessage]:
    """Incoming rows become human turns, outgoing rows assistant turns (staff ones marked).

    Reactions and the extra parts of a long reply split for sending are left out.
    """
    messages: list[BaseMessage] = []
    for row in rows:
        if row.deleted_at is not None or row.message_type == "reaction":
            continue
        if (row.meta or {}).get("part_of"):
            continue
        if row.direction == "incoming":
            messages.append(HumanMessage(describe(row), id=f"db-{row.id}"))
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
    session: AsyncSession,
    *,
    organization_id: int,
    conversation_id: int,
    limit: int = HISTORY_LIMIT,
    batch: Collection[int] | None = None,
) -> list[BaseMessage]:
    """The conversation's last `limit` stored messages as LangChain messages, oldest first.

    Messages still waiting for an answer come last, in timestamp order: WhatsApp stamps
    whole seconds, so one that arrived during the previous turn may carry a time earlier
    than that turn's reply, yet it is what this turn answers. With `batch`, pending
    messages outside it (arrived after the turn's batch was taken) are left for the next
    turn: the model must not answer what this turn will not mark answered.
    """
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
    waiting = [
        r
        for r in rows
        if not (batch is not None and r.direction == "incoming" and r.status == "pending")
        or r.id in batch
    ]
    ordered = sorted(
        waiting,
        key=lambda r: (
            r.direction == "incoming" and r.status == "pending",
            r.message_at,
            r.id or 0,
        ),
    )
    return trim(to_langchain(ordered), limit)
