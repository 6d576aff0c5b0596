"""Evolution API v2 webhooks (Baileys channel) as normalised events.

One parser for every Evolution version seen (2.2.3 to 2.4.0-rc): the LID and phone of a
sender are read from every key field any version used, and numbers from every
serialisation. A message typed by staff on the business phone is an `Inbound` with
`from_me`; only our own API sends (`send.message`) are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from zapvet.bridge.baileys import (
    SKIPPED,
    content_type,
    context_of,
    read_content,
    reply_id,
    source_of,
    text_of,
    unwrap,
)
from zapvet.bridge.events import (
    Connection,
    Delete,
    DeliveryStatus,
    Edit,
    Event,
    Ignored,
    Inbound,
    PayloadError,
    Reaction,
    Sender,
    Status,
)
from zapvet.bridge.jid import lid_of, parse_jid, phone_of
from zapvet.bridge.payload import (
    compact,
    items,
    mapping,
    optional_timestamp,
    required_text,
    short,
    sub,
    text,
    timestamp,
)

# Where each Evolution/Baileys version put the other identity of a 1:1 sender (see the
# version matrix in research/whatsapp.md §4.3); the remote JID itself comes first.
_CHAT_FIELDS = ("remoteJid", "remoteJidAlt", "previousRemoteJid", "senderPn", "senderLid")
# In a 1:1 chat only the customer's own messages can name an author.
_AUTHOR_FIELDS = ("participant", "participantAlt", "participantPn", "participantLid")

_DELIVERY: dict[str | int, DeliveryStatus] = {
    "ERROR": "failed",
    "SERVER_ACK": "sent",
    "DELIVERY_ACK": "delivered",
    "READ": "read",
    "PLAYED": "played",
    0: "failed",
    2: "sent",
    3: "delivered",
    4: "read",
    5: "played",
}
# protocolMessage.type, as an enum name (protobuf toJSON) or its number.
_PROTOCOL: dict[str | int, str] = {
    "REVOKE": "revoke",
    0: "revoke",
    "MESSAGE_EDIT": "edit",
    14: "edit",
}
_REPLY_CHATS = ("phone", "lid", "hosted", "hosted_lid")
_CONNECTION_STATES = ("open", "connecting", "close", "refused")


def _enum(value: Any) -> str | int | None:
    """An enum name or number as JSON gives it: a bool is not a number, a list not a name."""
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def _lookup(table: Mapping[str | int, Any], value: Any) -> Any:
    named = _enum(value)
    return None if named is None else table.get(named)


def _event_name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise PayloadError(f"the webhook names no event: {short(raw)}")
    # "messages.upsert" in bodies, "messages-upsert" in by-events paths, MESSAGES_UPSERT in config.
    return raw.strip().lower().replace("-", ".").replace("_", ".")


def _key(record: Mapping[str, Any], where: str) -> tuple[Mapping[str, Any], str, str]:
    key = mapping(record.get("key"), f"{where}.key")
    return (
        key,
        required_text(key, "id", f"{where}.key"),
        required_text(key, "remoteJid", f"{where}.key"),
    )


def _chat_ignored(chat_id: str, provider_id: str, where: str) -> Ignored | None:
    """Why a chat is not a 1:1 conversation we answer, or None when it is one."""
    jid = parse_jid(chat_id)
    if jid is None:
        raise PayloadError(f"{where}: {short(chat_id)} is not a WhatsApp JID")
    if jid.kind in _REPLY_CHATS:
        return None
    reasons = {"group": "group chat", "newsletter": "newsletter", "bot": "bot chat"}
    if jid.kind == "broadcast":
        reason = "status broadcast" if jid.is_status else "broadcast list"
    else:
        reason = reasons.get(jid.kind, "unsupported chat")
    return Ignored(reason, {"chat_id": chat_id, "provider_id": provider_id})


def _sender(key: Mapping[str, Any], *, from_me: bool, name: str | None, where: str) -> Sender:
    """The customer of the chat; for `from_me` too, since staff wrote to this customer."""
    fields = _CHAT_FIELDS if from_me else _CHAT_FIELDS + _AUTHOR_FIELDS
    jids = [value for field in fields if (value := text(key, field))]
    phone = next((found for jid in jids if (found := phone_of(jid))), None)
    lid = next((found for jid in jids if (found := lid_of(jid))), None)
    if phone is None and lid is None:
        raise PayloadError(f"{where}.key names neither a phone number nor a LID")
    return Sender(phone=phone, lid=lid, name=None if from_me else name)


def _protocol(
    part: Mapping[str, Any], chat_id: str, sent_at: datetime | None, provider_id: str, where: str
) -> Event:
    """A revoke or an edit of an earlier message; other protocol messages are plumbing."""
    kind = _lookup(_PROTOCOL, part.get("type"))
    if kind is None:
        details = compact(provider_id=provider_id, type=_enum(part.get("type")))
        return Ignored("protocol message", details)
    target_id = required_text(sub(part, "key"), "id", f"{where}.protocolMessage.key")
    if kind == "revoke":
        return Delete(target_id=target_id, chat_id=chat_id)
    edited_at = optional_timestamp(part.get("timestampMs"), f"{where}.timestampMs") or sent_at
    return Edit(target_id, chat_id, text_of(sub(part, "editedMessage")), edited_at)


def _upsert(record: Mapping[str, Any], where: str) -> Event:
    key, provider_id, chat_id = _key(record, where)
    if ignored := _chat_ignored(chat_id, provider_id, where):
        return ignored
    details = {"provider_id": provider_id, "chat_id": chat_id}
    if record.get("broadcast") is True:
        # A broadcast list's message may arrive in the author's 1:1 chat, flagged (WAMessage).
        return Ignored("broadcast list", details)
    if record.get("messageStubType") or record.get("message") is None:
        return Ignored("stub without content", details)  # undecryptable, or a system notice
    message = unwrap(mapping(record["message"], f"{where}.message"))
    sent_at = timestamp(record.get("messageTimestamp"), f"{where}.messageTimestamp")
    from_me = key.get("fromMe") is True
    kind = content_type(message)
    if kind is None:
        only_keys = "senderKeyDistributionMessage" in message
        return Ignored("sender key distribution only" if only_keys else "empty message", details)
    if kind == "protocolMessage":
        return _protocol(sub(message, kind), chat_id, sent_at, provider_id, where)
    if kind in SKIPPED:
        return Ignored(SKIPPED[kind], details)
    sender = _sender(key, from_me=from_me, name=text(record, "pushName"), where=where)
    if kind == "reactionMessage":
        part = sub(message, kind)
        target_id = required_text(sub(part, "key"), "id", f"{where}.reactionMessage.key")
        emoji = text(part, "text") or ""  # an empty emoji takes the reaction back
        return Reaction(provider_id, target_id, chat_id, sender, from_me, emoji, sent_at)
    content = read_content(message)
    raw = mapping(record["message"], f"{where}.message")
    media, inline = _media(content.media, key, message, raw)
    # Up to 2.3.7 the reply lives in data.contextInfo, in 2.4.0-rc in data.messageContextInfo.
    contexts = (context_of(message), sub(record, "contextInfo"), sub(record, "messageContextInfo"))
    return Inbound(
        provider_id=provider_id,
        chat_id=chat_id,
        sender=sender,
        from_me=from_me,
        sent_at=sent_at,
        kind=content.kind,
        text=content.text,
        media=media,
        reply_to=reply_id(*contexts),
        inline_media=inline,
    )


def _media(
    media: dict[str, Any] | None,
    key: Mapping[str, Any],
    message: Mapping[str, Any],
    raw: Mapping[str, Any],
) -> tuple[dict[str, Any] | None, str | None]:
    """The media description plus how the worker gets the bytes, and the webhook's own
    base64 of them (Evolution's "webhook base64" setting), which is never stored.

    Evolution puts `base64` and `speechToText` (its own transcription, when turned on) beside
    the content in `data.message`, outside any wrapper.
    """
    source = source_of(message)
    if media is None or source is None:
        return media, None
    extra = compact(speech_to_text=text(raw, "speechToText"))
    extra["source"] = {"key": dict(key), "message": source}
    inline = raw.get("base64")
    return {**media, **extra}, inline if isinstance(inline, str) and inline else None


def _edited(record: Mapping[str, Any], where: str) -> Event:
    """`data` is Baileys' protocolMessage itself: `{key (the target), type, editedMessage}`."""
    _, target_id, chat_id = _key(record, where)
    if ignored := _chat_ignored(chat_id, target_id, where):
        return ignored
    return _protocol(record, chat_id, None, target_id, where)


def _delete(record: Mapping[str, Any], where: str) -> Event:
    """`data` is the deleted message's key (with `status: "DELETED"`), or `{key}`."""
    keyed = record if "key" in record else {"key": record}
    _, target_id, chat_id = _key(keyed, where)
    return _chat_ignored(chat_id, target_id, where) or Delete(target_id=target_id, chat_id=chat_id)


def _update(record: Mapping[str, Any], where: str) -> Event:
    """Delivery news: `{keyId, remoteJid, fromMe, status, …}`; older versions nest a `key`."""
    key = sub(record, "key")
    provider_id = text(record, "keyId") or text(key, "id")
    if provider_id is None:
        raise PayloadError(f"{where} needs a non-empty string 'keyId' (or key.id)")
    chat_id = text(record, "remoteJid") or text(key, "remoteJid")
    if chat_id and (ignored := _chat_ignored(chat_id, provider_id, where)):
        return ignored
    details = {"provider_id": provider_id}
    if record.get("message") is not None:
        return Ignored("edit reported as an update", details)  # messages.edited carries it
    if record.get("pollUpdates"):
        return Ignored("poll vote", details)
    status = record.get("status")
    if status == "DELETED":
        if chat_id is None:
            raise PayloadError(f"{where}: a deletion without remoteJid")
        return Delete(target_id=provider_id, chat_id=chat_id)
    delivery = _lookup(_DELIVERY, status)
    if delivery is None:
        return Ignored("status not tracked", compact(**details, status=_enum(status)))
    if (record.get("fromMe") if "fromMe" in record else key.get("fromMe")) is False:
        return Ignored("receipt for a received message", details)
    return Status(provider_id=provider_id, status=delivery)


def _connection(record: Mapping[str, Any], where: str) -> Event:  # noqa: ARG001
    """`{instance, state, statusReason, wuid?, profileName?}`: "open", "connecting", "close"
    (Evolution gave up reconnecting) or "refused" (the QR code limit was reached)."""
    state = record.get("state")
    if state not in _CONNECTION_STATES:
        return Ignored("connection state not tracked", compact(state=_enum(state)))
    return Connection(state=state, reason=_reason(record.get("statusReason")))


def _qrcode(record: Mapping[str, Any], where: str) -> Event:
    """`{qrcode: {instance, pairingCode, code, base64}}`: a QR code waits to be scanned; or
    `{message, statusCode}` when Evolution stopped making them (the QR code limit)."""
    if isinstance(record.get("qrcode"), Mapping):
        return Connection(state="qrcode")
    if "statusCode" in record:
        return Connection(state="refused", reason=_reason(record.get("statusCode")))
    raise PayloadError(f"{where} holds neither a qrcode nor a statusCode")


def _reason(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _own_send(record: Mapping[str, Any], where: str) -> Event:
    _, provider_id, _ = _key(record, where)
    return Ignored("own API send", {"provider_id": provider_id})


_HANDLERS: dict[str, Callable[[Mapping[str, Any], str], Event]] = {
    "messages.upsert": _upsert,
    "messages.edited": _edited,
    "messages.delete": _delete,
    "messages.update": _update,
    "send.message": _own_send,
    "connection.update": _connection,
    "qrcode.updated": _qrcode,
}


def parse_evolution(payload: Mapping[str, Any], *, event: str | None = None) -> list[Event]:
    """The events of one Evolution webhook; `event` is the name from a by-events URL path.

    Raises:
        PayloadError: the body is not an Evolution webhook of the event it names.
    """
    body = mapping(payload, "the webhook body")
    name = _event_name(event if event is not None else body.get("event"))
    handler = _HANDLERS.get(name)
    if handler is None:
        return [Ignored("event not handled", {"event": name})]
    if "data" not in body:
        raise PayloadError(f"{name} webhook without data")
    data = body["data"]
    if isinstance(data, Mapping):
        return [handler(data, "data")]
    records = items(data, "data")  # messages.upsert may batch
    return [
        handler(mapping(record, f"data[{i}]"), f"data[{i}]") for i, record in enumerate(records)
    ]
