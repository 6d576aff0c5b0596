"""WhatsApp Cloud API webhooks as normalised events, each with its `phone_number_id`.

One webhook may carry several entries and changes, for several of our numbers; each event
comes back paired with the `metadata.phone_number_id` it belongs to, which names the
instance. Changes without a phone number id (account or template news) yield nothing.
Meta signs each body with the app secret (`X-Hub-Signature-256`); `signature` is that
header, computed here only, for the bridge that checks it and the fake that sends it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from zapvet.bridge.baileys import Content
from zapvet.bridge.events import (
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
from zapvet.bridge.payload import (
    compact,
    integer,
    items,
    mapping,
    number,
    objects,
    required_text,
    short,
    sub,
    text,
    timestamp,
)


def signature(body: bytes, app_secret: str) -> str:
    """The `X-Hub-Signature-256` value Meta sends with `body`: "sha256=" and the hex HMAC."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def signed(body: bytes, header: str, app_secret: str | None) -> bool:
    """Whether `header` is `body`'s signature with `app_secret`; never without a secret."""
    if not app_secret:
        return False
    return hmac.compare_digest(header.encode(), signature(body, app_secret).encode())


_DELIVERY: dict[str, DeliveryStatus] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "played": "played",
    "failed": "failed",
}


def error_text(errors: Any) -> str | None:
    """`errors[0]` as one line: code, title and details ("131047 Re-engagement message: …")."""
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, Mapping):
        return None
    code = integer(first.get("code"))
    title = text(first, "title") or text(first, "message")
    details = text(sub(first, "error_data"), "details")
    head = " ".join(part for part in (str(code) if code is not None else None, title) if part)
    tail = details if details and details != title else None
    return ": ".join(part for part in (head, tail) if part) or None


def _media(part: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return compact(
        media_id=text(part, "id"),
        mimetype=text(part, "mime_type"),
        sha256=text(part, "sha256"),
        file_length=integer(part.get("file_size")),
        **extra,
    )


def _interactive(part: Mapping[str, Any]) -> Content:
    kind = text(part, "type")
    reply = sub(part, kind) if kind else {}
    if kind == "nfm_reply":
        media = compact(
            type=kind, name=text(reply, "name"), response_json=text(reply, "response_json")
        )
        return Content("interactive", text(reply, "body") or "", media)
    title = text(reply, "title")
    media = compact(
        type=kind, id=text(reply, "id"), title=title, description=text(reply, "description")
    )
    return Content("interactive", title or "", media or None)


def _card(card: Mapping[str, Any]) -> dict[str, Any]:
    phones = objects(card.get("phones"))
    numbers = [found for p in phones if (found := text(p, "wa_id") or text(p, "phone"))]
    return compact(name=text(sub(card, "name"), "formatted_name"), phones=numbers)


def read_content(message: Mapping[str, Any]) -> Content:
    """Kind, text and media of a `messages[]` item (also of an edit's new `message`)."""
    kind = message.get("type")
    part = sub(message, kind) if isinstance(kind, str) else {}
    caption = text(part, "caption") or ""
    if kind == "text":
        return Content("text", text(part, "body") or "")
    if kind in ("image", "video"):
        return Content(kind, caption, _media(part))
    if kind == "document":
        return Content("document", caption, _media(part, file_name=text(part, "filename")))
    if kind == "sticker":
        return Content("sticker", "", _media(part, animated=part.get("animated") is True))
    if kind == "audio":
        return Content("audio", "", _media(part, voice=part.get("voice") is True))
    if kind == "interactive":
        return _interactive(part)
    if kind == "button":
        title = text(part, "text")
        media = compact(type="button", id=text(part, "payload"), title=title)
        return Content("interactive", title or "", media)
    if kind == "location":
        media = compact(
            latitude=number(part.get("latitude")),
            longitude=number(part.get("longitude")),
            name=text(part, "name"),
            address=text(part, "address"),
            url=text(part, "url"),
        )
        return Content("location", "", media)
    if kind == "contacts":
        cards = [_card(card) for card in objects(message.get("contacts"))]
        return Content("contact", "", {"contacts": cards})
    return Content("other", media=compact(type=kind if isinstance(kind, str) else None) or None)


def _digits(value: str | None) -> str | None:
    return value if value and value.isascii() and value.isdigit() else None


def _contact(
    contacts: list[Mapping[str, Any]], wa_id: str | None, bsuid: str | None
) -> Mapping[str, Any]:
    """The `contacts[]` entry of the message's author: by `wa_id` or BSUID, else the only one."""
    for contact in contacts:
        if (wa_id and contact.get("wa_id") == wa_id) or (bsuid and contact.get("user_id") == bsuid):
            return contact
    if len(contacts) == 1:
        only = contacts[0]
        # A lone contact naming somebody else is not this author: never merge two people.
        clash = (wa_id and text(only, "wa_id") not in (None, wa_id)) or (
            bsuid and text(only, "user_id") not in (None, bsuid)
        )
        return {} if clash else only
    return {}


def _author(
    message: Mapping[str, Any], contacts: list[Mapping[str, Any]], where: str
) -> tuple[str, Sender]:
    """The chat id to reply to and the sender: `from` (the wa_id), or the BSUID alone."""
    sent_from, from_user = text(message, "from"), text(message, "from_user_id")
    chat_id = sent_from or from_user
    if chat_id is None:
        raise PayloadError(f"{where} has neither 'from' nor 'from_user_id'")
    contact = _contact(contacts, sent_from, from_user)
    phone = _digits(sent_from) or _digits(text(contact, "wa_id"))
    bsuid = from_user or text(contact, "user_id") or (None if phone else sent_from)
    name = text(sub(contact, "profile"), "name")
    return chat_id, Sender(phone=phone, bsuid=bsuid, name=name)


def _recipient(echo: Mapping[str, Any], where: str) -> tuple[str, Sender]:
    """For staff echoes the customer is the recipient, `to` (or the BSUID)."""
    to, to_user = text(echo, "to"), text(echo, "to_user_id")
    chat_id = to or to_user
    if chat_id is None:
        raise PayloadError(f"{where} has neither 'to' nor 'to_user_id'")
    phone = _digits(to)
    return chat_id, Sender(phone=phone, bsuid=to_user or (None if phone else to))


def _message(
    message: Mapping[str, Any], contacts: list[Mapping[str, Any]], where: str, *, echo: bool
) -> Event:
    provider_id = required_text(message, "id", where)
    if group_id := text(message, "group_id"):
        return Ignored("group chat", {"group_id": group_id, "provider_id": provider_id})
    sent_at = timestamp(message.get("timestamp"), f"{where}.timestamp")
    chat_id, sender = _recipient(message, where) if echo else _author(message, contacts, where)
    kind = message.get("type")
    if kind == "reaction":
        part = sub(message, "reaction")
        target_id = required_text(part, "message_id", f"{where}.reaction")
        emoji = text(part, "emoji") or ""  # empty or missing: the reaction was taken back
        return Reaction(provider_id, target_id, chat_id, sender, echo, emoji, sent_at)
    if kind == "edit":
        part = sub(message, "edit")
        target_id = required_text(part, "original_message_id", f"{where}.edit")
        return Edit(target_id, chat_id, read_content(sub(part, "message")).text, sent_at)
    if kind == "revoke":
        target_id = required_text(sub(message, "revoke"), "original_message_id", f"{where}.revoke")
        return Delete(target_id=target_id, chat_id=chat_id)
    if kind == "system":
        system = sub(message, "system")
        details = compact(type=text(system, "type"), body=text(system, "body"))
        return Ignored("system message", {"provider_id": provider_id, **details})
    if kind == "unsupported":
        details = compact(provider_id=provider_id, error=error_text(message.get("errors")))
        return Ignored("unsupported message", details)
    content = read_content(message)
    return Inbound(
        provider_id=provider_id,
        chat_id=chat_id,
        sender=sender,
        from_me=echo,
        sent_at=sent_at,
        kind=content.kind,
        text=content.text,
        media=content.media,
        reply_to=text(sub(message, "context"), "id"),
    )


def _status(status: Mapping[str, Any], where: str) -> Event:
    provider_id = required_text(status, "id", where)
    value = status.get("status")
    delivery = _DELIVERY.get(value) if isinstance(value, str) else None
    if delivery is None:
        named = value if isinstance(value, str) else None
        return Ignored("status not tracked", compact(provider_id=provider_id, status=named))
    return Status(provider_id, delivery, error_text(status.get("errors")))


def _value(value: Mapping[str, Any], where: str, *, echo: bool) -> list[tuple[str, Event]]:
    metadata = mapping(value.get("metadata"), f"{where}.metadata")
    number_id = required_text(metadata, "phone_number_id", f"{where}.metadata")
    contacts = [
        mapping(c, f"{where}.contacts[{i}]")
        for i, c in enumerate(items(value.get("contacts"), f"{where}.contacts"))
    ]
    events: list[Event] = []
    messages_key = "message_echoes" if echo else "messages"
    for i, message in enumerate(items(value.get(messages_key), f"{where}.{messages_key}")):
        at = f"{where}.{messages_key}[{i}]"
        events.append(_message(mapping(message, at), contacts, at, echo=echo))
    for i, status in enumerate(items(value.get("statuses"), f"{where}.statuses")):
        at = f"{where}.statuses[{i}]"
        events.append(_status(mapping(status, at), at))
    for problem in items(value.get("errors"), f"{where}.errors"):
        events.append(Ignored("webhook error", compact(error=error_text([problem]))))
    return [(number_id, event) for event in events]


def _change(change: Mapping[str, Any], where: str) -> list[tuple[str, Event]]:
    field = change.get("field")
    if field in ("messages", "smb_message_echoes"):
        value = mapping(change.get("value"), f"{where}.value")
        return _value(value, f"{where}.value", echo=field == "smb_message_echoes")
    number_id = text(sub(sub(change, "value"), "metadata"), "phone_number_id")
    if number_id is None:
        return []  # account-level news: no instance to attribute it to
    named = field if isinstance(field, str) else None
    return [(number_id, Ignored("field not handled", compact(field=named)))]


def parse_cloud(payload: Mapping[str, Any]) -> list[tuple[str, Event]]:
    """Every event of one Cloud API webhook, paired with its `phone_number_id`.

    Raises:
        PayloadError: the body is not a WhatsApp Business Account webhook.
    """
    body = mapping(payload, "the webhook body")
    if body.get("object") != "whatsapp_business_account":
        raise PayloadError(
            f"object must be 'whatsapp_business_account', got {short(body.get('object'))}"
        )
    if not isinstance(body.get("entry"), list):
        raise PayloadError(f"entry must be an array, got {short(body.get('entry'))}")
    events: list[tuple[str, Event]] = []
    for i, entry in enumerate(body["entry"]):
        entry = mapping(entry, f"entry[{i}]")
        if not isinstance(entry.get("changes"), list):
            raise PayloadError(f"entry[{i}].changes must be an array")
        for j, change in enumerate(entry["changes"]):
            where = f"entry[{i}].changes[{j}]"
            events.extend(_change(mapping(change, where), where))
    return events
