"""The message part of inbound media webhooks, in each provider's own field names
(research/whatsapp.md §1.4, §4.5, §5.2): what `FakeEvolutionAPI.incoming_media` and
`FakeCloudAPI.incoming_media` put inside their envelopes."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Literal

MediaKind = Literal[
    "audio",
    "image",
    "video",
    "document",
    "sticker",
    "location",
    "contact",
    "contacts",
    "reaction",
]

#: Kinds whose message carries a file.
FILE_KINDS = frozenset({"audio", "image", "video", "document", "sticker"})


@dataclass(frozen=True)
class Extras:
    """What non-file kinds carry: a place, contact cards, or a reaction to a message."""

    latitude: float = -23.5614
    longitude: float = -46.6559
    place_name: str | None = None
    address: str | None = None
    display_name: str = "Dra. Paula Vet"
    vcard: str | None = None
    contacts: tuple[tuple[str, str], ...] = ()  # (display name, phone)
    emoji: str = "👍"
    target_id: str = ""


def vcard(name: str, phone: str) -> str:
    """A vCard 3.0 as WhatsApp writes one, with the `waid` parameter."""
    digits = "".join(c for c in phone if c.isdigit())
    return (
        "BEGIN:VCARD\nVERSION:3.0\n"
        f"N:;{name};;;\nFN:{name}\n"
        f"TEL;type=CELL;type=VOICE;waid={digits}:+{digits}\nEND:VCARD"
    )


def _long(value: int) -> dict[str, Any]:
    """A protobuf Long as Evolution ≥ 2.3.6 serialises it."""
    return {"low": value & 0xFFFFFFFF, "high": value >> 32, "unsigned": True}


def _bytes_object(raw: bytes) -> dict[str, int]:
    """Bytes as Evolution ≥ 2.3.6 serialises them: {"0": 12, "1": 201, …}."""
    return {str(i): b for i, b in enumerate(raw)}


def evolution_message(
    kind: MediaKind,
    data: bytes | None,
    *,
    mimetype: str | None,
    caption: str | None,
    seconds: int | None,
    ptt: bool,
    file_name: str | None,
    remote_jid: str,
    extras: Extras,
) -> tuple[str, dict[str, Any]]:
    """(`messageType`, `message`) of an Evolution upsert carrying `kind`."""
    if kind in FILE_KINDS:
        raw = data or b""
        path = f"/v/t62.7117-24/{secrets.randbelow(10**8)}_n.enc"
        content: dict[str, Any] = {
            "url": f"https://mmg.whatsapp.net{path}?ccb=11-4",
            "mimetype": mimetype or "application/octet-stream",
            "fileSha256": base64.b64encode(hashlib.sha256(raw).digest()).decode(),
            "fileLength": _long(len(raw)),
            "mediaKey": _bytes_object(secrets.token_bytes(32)),
            "directPath": path,
            "mediaKeyTimestamp": _long(1760025799),
        }
        if kind == "audio":
            content |= {"seconds": seconds if seconds is not None else 1, "ptt": ptt}
        elif kind == "video":
            content |= {"seconds": seconds if seconds is not None else 1, "gifPlayback": False}
        elif kind in {"image", "sticker"}:
            content |= {"height": 8, "width": 8}
            if kind == "sticker":
                content["isAnimated"] = False
        elif kind == "document":
            name = file_name or "documento.pdf"
            content |= {"fileName": name, "title": name, "pageCount": 1}
        if caption is not None and kind in {"image", "video", "document"}:
            # A captioned document comes as documentWithCaptionMessage; Evolution flattens it.
            content["caption"] = caption
        return f"{kind}Message", {f"{kind}Message": content}
    if kind == "location":
        place: dict[str, Any] = {
            "degreesLatitude": extras.latitude,
            "degreesLongitude": extras.longitude,
        }
        if extras.place_name is not None:
            place["name"] = extras.place_name
        if extras.address is not None:
            place["address"] = extras.address
        return "locationMessage", {"locationMessage": place}
    if kind == "contact":
        card = extras.vcard or vcard(extras.display_name, "5511955556666")
        message = {"displayName": extras.display_name, "vcard": card}
        return "contactMessage", {"contactMessage": message}
    if kind == "contacts":
        cards = [{"displayName": n, "vcard": vcard(n, p)} for n, p in extras.contacts]
        array = {"displayName": f"{len(cards)} contatos", "contacts": cards}
        return "contactsArrayMessage", {"contactsArrayMessage": array}
    reaction = {
        "key": {"remoteJid": remote_jid, "fromMe": True, "id": extras.target_id},
        "text": extras.emoji,
        "senderTimestampMs": _long(1760025800000),
    }
    return "reactionMessage", {"reactionMessage": reaction}


def cloud_message(
    kind: MediaKind,
    media_id: str | None,
    data: bytes | None,
    *,
    mimetype: str | None,
    caption: str | None,
    ptt: bool,
    file_name: str | None,
    extras: Extras,
) -> tuple[str, Any]:
    """(`type`, what the message holds under that key) of a Cloud API message of `kind`."""
    if kind in FILE_KINDS:
        content: dict[str, Any] = {
            "mime_type": mimetype or "application/octet-stream",
            "sha256": base64.b64encode(hashlib.sha256(data or b"").digest()).decode(),
            "id": media_id,
        }
        if kind == "audio":
            content["voice"] = ptt
        elif kind == "sticker":
            content["animated"] = False
        elif kind == "document":
            content["filename"] = file_name or "documento.pdf"
        if caption is not None and kind in {"image", "video", "document"}:
            content["caption"] = caption
        return kind, content
    if kind == "location":
        place: dict[str, Any] = {"latitude": extras.latitude, "longitude": extras.longitude}
        if extras.place_name is not None:
            place["name"] = extras.place_name
        if extras.address is not None:
            place["address"] = extras.address
        return "location", place
    if kind in {"contact", "contacts"}:
        people = extras.contacts or ((extras.display_name, "5511955556666"),)
        cards = [
            {
                "name": {"formatted_name": name, "first_name": name.split()[0]},
                "phones": [{"phone": f"+{phone}", "wa_id": phone, "type": "CELL"}],
            }
            for name, phone in people
        ]
        return "contacts", cards
    return "reaction", {"message_id": extras.target_id, "emoji": extras.emoji}
