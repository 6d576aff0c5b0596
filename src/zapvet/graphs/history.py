"""Conversation history for the agents: stored messages in, a clean LangChain message list out.

Only text turns are stored, so history never carries tool calls; `trim` still guarantees
what the OpenAI API demands (no tool message without its call, no call without results)
in case a caller hands in tool messages.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.models import Message
from zapvet.models.conversation import HISTORY_LIMIT, pending_and_recent, recent_messages

STAFF_PREFIX = "[mensagem de uma pessoa da equipe] "


#: How each kind of media reads to the agent, by what the worker made of it (`media.prepare`).
_UNHEARD = "peça para o cliente escrever"
_MEDIA = {
    ("audio", "too_large"): f"um áudio{{seconds}} longo demais para você ouvir: {_UNHEARD}",
    ("audio", "failed"): f"um áudio{{seconds}} que não foi possível ouvir: {_UNHEARD}",
    ("audio", None): f"um áudio{{seconds}} que você não conseguiu ouvir: {_UNHEARD}",
    ("image", "shown"): "uma imagem, que segue",
    ("image", "ready"): "uma imagem",
    ("image", "unseen"): "uma imagem (você não consegue ver imagens: peça para descrever)",
    ("image", "too_large"): "uma imagem grande demais para você abrir: peça para descrever",
    ("image", "failed"): "uma imagem que não foi possível abrir: peça para descrever",
    ("image", None): "uma imagem",
    ("image", "unsupported"): "um arquivo de imagem{name} de um tipo que você não abre",
    (
        "audio",
        "unsupported",
    ): f"um arquivo de áudio{{name}} de um tipo que você não ouve: {_UNHEARD}",
    ("document", "unsupported"): "um documento{name} de um tipo que você não abre",
    ("document", "read"): "um documento{name}; texto extraído dele, entre « »: «{text}»",
    ("document", "too_large"): "um documento{name} grande demais para você receber",
    ("document", "failed"): "um documento{name} que não foi possível abrir",
    ("document", None): "um documento{name} que você não consegue ler",
    ("video", None): "um vídeo{seconds} (você não consegue assistir vídeos: diga isso e peça "
    "para o cliente escrever ou mandar uma foto)",
    ("sticker", None): "uma figurinha",
    ("location", None): "uma localização: {place}",
    ("contact", None): "{cards}",
}


def _place(meta: Mapping[str, Any]) -> str:
    words = [meta.get("name"), meta.get("address")]
    where = ", ".join(str(w) for w in words if w)
    latitude, longitude = meta.get("latitude"), meta.get("longitude")
    coordinates = (
        f"{latitude}, {longitude}" if latitude is not None and longitude is not None else ""
    )
    if where and coordinates:
        return f"{where} (coordenadas {coordinates})"
    return where or (f"coordenadas {coordinates}" if coordinates else "sem endereço")


def _cards(meta: Mapping[str, Any]) -> str:
    cards = [c for c in meta.get("contacts") or [] if isinstance(c, Mapping)]
    if not cards:
        return "um contato"
    shown = [
        " ".join(
            [str(c.get("name") or "sem nome")]
            + [f"+{p}" if str(p).isdigit() else str(p) for p in c.get("phones") or []]
        )
        for c in cards
    ]
    return ("um contato: " if len(shown) == 1 else "contatos: ") + "; ".join(shown)


def _state(row: Message, meta: Mapping[str, Any], shown: bool) -> str | None:
    state = meta.get("state")
    if row.message_type == "image":
        if shown:
            return "shown"
        if state == "ready" and meta.get("vision") is False:
            return "unseen"
    if row.message_type == "document" and state == "ready" and meta.get("text"):
        return "read"
    if state in ("too_large", "failed", "unsupported"):
        return str(state)
    return None


def describe(row: Message, *, shown: bool = False) -> str:
    """The text the agent reads for a stored message: media become an honest description.

    A transcribed voice note reads as the customer's own words; `shown` says the message's
    photo goes to the model beside this text.
    """
    if row.message_type in ("text", "interactive"):
        return row.content
    meta = (row.meta or {}).get("media") or {}
    if row.message_type == "audio" and meta.get("state") == "ready" and meta.get("transcript"):
        return " ".join(part for part in (str(meta["transcript"]), row.content) if part)
    state = _state(row, meta, shown)
    what = _MEDIA.get((row.message_type, state)) or _MEDIA.get((row.message_type, None))
    if what is None:
        what = "uma mensagem de um tipo que você não consegue ler"
    text = what.format(
        seconds=f" de {meta['seconds']} s" if meta.get("seconds") else "",
        name=f" ({meta['file_name']})" if meta.get("file_name") else "",
        text=meta.get("text", ""),
        place=_place(meta),
        cards=_cards(meta),
    )
    text = f"[O cliente enviou {text}.]"
    return f"{text} Legenda: {row.content}" if row.content else text


def _with_image(text: str, mimetype: str, data: bytes) -> list[str | dict[str, Any]]:
    """Content parts: the words, then the photo as a `data:` URL (low detail: 85 tokens)."""
    url = f"data:{mimetype};base64,{base64.b64encode(data).decode('ascii')}"
    return [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
    ]


def to_langchain(
    rows: Sequence[Message], images: Mapping[int, tuple[str, bytes]] | None = None
) -> list[BaseMessage]:
    """Incoming rows become human turns, outgoing rows assistant turns (staff ones marked).

    Reactions, stickers, the extra parts of a long reply split for sending and messages
    received while the contact was blocked are left out.
    `images` holds the photos of this turn's messages (row id → MIME type and bytes): those
    rows carry the image itself, every other photo reads as a placeholder.
    """
    images = images or {}
    messages: list[BaseMessage] = []
    for row in rows:
        if row.deleted_at is not None or row.message_type in ("reaction", "sticker"):
            continue
        if (row.meta or {}).get("part_of") or (row.meta or {}).get("blocked"):
            continue  # a split reply's later parts; what a blocked contact sent
        if row.direction == "incoming":
            photo = images.get(row.id or 0)
            text = describe(row, shown=photo is not None)
            content = text if photo is None else _with_image(text, *photo)
            messages.append(HumanMessage(content, id=f"db-{row.id}"))
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
    images: Mapping[int, tuple[str, bytes]] | None = None,
) -> list[BaseMessage]:
    """The conversation's last `limit` stored messages as LangChain messages, oldest first.

    Messages still waiting for an answer come last, in timestamp order: WhatsApp stamps
    whole seconds, so one that arrived during the previous turn may carry a time earlier
    than that turn's reply, yet it is what this turn answers. With `batch`, pending
    messages outside it (arrived after the turn's batch was taken) are left for the next
    turn: the model must not answer what this turn will not mark answered.
    """
    if batch is None:
        rows = list(await session.exec(recent_messages(organization_id, conversation_id, limit)))
    else:  # the batch may be older than the `limit` newest (`history_of`): read it too
        connection = await session.connection()
        keys = {"organization_id": organization_id, "conversation_id": conversation_id}
        rows = list((await connection.execute(pending_and_recent(), keys)).all())
    return history_of(rows, limit=limit, batch=batch, images=images)


def history_of(
    rows: Sequence[Message],
    *,
    limit: int = HISTORY_LIMIT,
    batch: Collection[int] | None = None,
    images: Mapping[int, tuple[str, bytes]] | None = None,
) -> list[BaseMessage]:
    """`load_history` on rows already read: any superset of the conversation's `limit`
    newest messages (e.g. `models.pending_and_recent`); deleted ones are left out."""
    # Pending messages outside the batch go first: a flood can leave more of them, newer
    # than the batch, than `limit`, and the batch must never be cut from its own turn.
    kept = [
        r
        for r in rows
        if r.deleted_at is None
        and (
            not (batch is not None and r.direction == "incoming" and r.status == "pending")
            or r.id in batch
        )
    ]
    newest = sorted(kept, key=lambda r: (r.message_at, r.id or 0), reverse=True)[:limit]
    ordered = sorted(
        newest,
        key=lambda r: (
            r.direction == "incoming" and r.status == "pending",
            r.message_at,
            r.id or 0,
        ),
    )
    return trim(to_langchain(ordered, images), limit)
