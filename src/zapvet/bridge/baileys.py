"""Baileys message content (`WAMessage.message`): unwrapping, content type, text and media.

Mirrors Baileys' own `normalizeMessageContent` and `getContentType`, so what counts as the
text of a message here is what WhatsApp clients show; Evolution's `data.message` is this
object, sometimes flattened (`{conversation}` for an `extendedTextMessage`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from zapvet.bridge.payload import compact, integer, number, objects, sub, text
from zapvet.models.conversation import MessageType

WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "editedMessage",
    "associatedChildMessage",
    "groupStatusMessage",
    "groupStatusMessageV2",
    "deviceSentMessage",
)
_UNWRAP_DEPTH = 5  # Baileys stops after five layers too

# Content types that are not something a person said to the business.
SKIPPED = {
    "pollCreationMessage": "poll",
    "pollCreationMessageV2": "poll",
    "pollCreationMessageV3": "poll",
    "pollCreationMessageV5": "poll",
    "pollUpdateMessage": "poll vote",
    "albumMessage": "album header",  # each photo of the album arrives as its own message
    "secretEncryptedMessage": "encrypted edit without content",  # Evolution 2.3.7, #2545
    "encReactionMessage": "encrypted reaction",
    "pinInChatMessage": "pin",
    "keepInChatMessage": "keep in chat",
}

_TEL = re.compile(r"(?:[\w-]+\.)?TEL\b", re.IGNORECASE)
_WAID = re.compile(r"waid=(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Content:
    """What a message says, in the shape of `Inbound`'s kind, text and media."""

    kind: MessageType
    text: str = ""
    media: dict[str, Any] | None = None


def unwrap(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """The innermost message under ephemeral, view-once, edited, device-sent… wrappers."""
    for _ in range(_UNWRAP_DEPTH):
        inner = next((found for w in WRAPPERS if (found := sub(sub(message, w), "message"))), None)
        if inner is None:
            return message
        message = inner
    return message


def content_type(message: Mapping[str, Any]) -> str | None:
    """The first key naming content; `messageContextInfo` and sender keys are metadata."""
    for key, value in message.items():
        if value is None or not isinstance(key, str) or key == "senderKeyDistributionMessage":
            continue
        if key == "conversation" or "Message" in key:
            return key
    return None


def read_content(message: Mapping[str, Any]) -> Content:
    """Kind, text and media of an unwrapped message whose type is not skipped."""
    kind = content_type(message)
    if kind is None:
        return Content("other")
    if kind == "conversation":
        value = message[kind]
        return Content("text", value if isinstance(value, str) else "")
    reader = _READERS.get(kind)
    if reader is None:
        return Content("other", media={"type": kind})
    return reader(sub(message, kind))


def text_of(message: Mapping[str, Any]) -> str:
    """The text a person would see, for an edited message's new content."""
    return read_content(unwrap(message)).text


def reply_id(*contexts: Mapping[str, Any]) -> str | None:
    """The quoted message id (`stanzaId`) from the first context that has one."""
    return next((found for c in contexts if (found := text(c, "stanzaId"))), None)


def context_of(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """The content's own `contextInfo` (replies, mentions, forwards)."""
    kind = content_type(message)
    return sub(sub(message, kind), "contextInfo") if kind else {}


def _caption(part: Mapping[str, Any]) -> str:
    return text(part, "caption") or ""


#: Content types whose bytes live on WhatsApp's servers, fetched later by the worker.
DOWNLOADABLE = ("imageMessage", "videoMessage", "ptvMessage", "audioMessage", "documentMessage")
#: Bulky or useless fields left out of the reference the worker fetches the bytes with.
_NOT_KEPT = (
    "jpegThumbnail",
    "thumbnailDirectPath",
    "thumbnailSha256",
    "thumbnailEncSha256",
    "waveform",
    "contextInfo",
    "streamingSidecar",
    "base64",
)


def source_of(message: Mapping[str, Any]) -> dict[str, Any] | None:
    """`{kind: part}` of an unwrapped downloadable message, without thumbnails: what
    Evolution's `getBase64FromMediaMessage` needs (with the key) to fetch its bytes."""
    kind = content_type(message)
    if kind not in DOWNLOADABLE:
        return None
    part = sub(message, kind)
    return {kind: {k: v for k, v in part.items() if k not in _NOT_KEPT}}


def _file(part: Mapping[str, Any]) -> dict[str, Any]:
    """What every downloadable part says about its file: type, size and hash."""
    return compact(
        mimetype=text(part, "mimetype"),
        file_length=integer(part.get("fileLength")),
        sha256=text(part, "fileSha256"),
    )


def _image(part: Mapping[str, Any]) -> Content:
    media = compact(
        **_file(part),
        width=integer(part.get("width")),
        height=integer(part.get("height")),
    )
    return Content("image", _caption(part), media)


def _video(part: Mapping[str, Any], *, note: bool = False) -> Content:
    media = compact(
        **_file(part),
        seconds=integer(part.get("seconds")),
        gif=True if part.get("gifPlayback") is True else None,
        video_note=True if note else None,
    )
    return Content("video", _caption(part), media)


def _audio(part: Mapping[str, Any]) -> Content:
    media = compact(
        voice=part.get("ptt") is True,
        seconds=integer(part.get("seconds")),
        **_file(part),
    )
    return Content("audio", "", media)


def _document(part: Mapping[str, Any]) -> Content:
    media = compact(
        **_file(part),
        file_name=text(part, "fileName") or text(part, "title"),
        page_count=integer(part.get("pageCount")),
    )
    return Content("document", _caption(part), media)


def _sticker(part: Mapping[str, Any]) -> Content:
    media = compact(mimetype=text(part, "mimetype"), animated=part.get("isAnimated") is True)
    return Content("sticker", "", media)


def _location(part: Mapping[str, Any], *, live: bool = False) -> Content:
    media = compact(
        latitude=number(part.get("degreesLatitude")),
        longitude=number(part.get("degreesLongitude")),
        name=text(part, "name"),
        address=text(part, "address"),
        url=text(part, "url"),
        live=True if live else None,
    )
    return Content("location", text(part, "comment") or _caption(part), media)


def vcard_phones(vcard: str) -> list[str]:
    """The numbers of a vCard's TEL lines: the WhatsApp id (`waid=`) when given."""
    phones = []
    for line in vcard.splitlines():
        params, colon, value = line.partition(":")
        if colon and _TEL.match(params):
            waid = _WAID.search(params)
            phones.append(waid.group(1) if waid else value.strip())
    return [phone for phone in phones if phone]


def _card(part: Mapping[str, Any]) -> dict[str, Any]:
    return compact(name=text(part, "displayName"), phones=vcard_phones(text(part, "vcard") or ""))


def _contacts(part: Mapping[str, Any]) -> Content:
    cards = objects(part.get("contacts")) if "contacts" in part else [part]
    return Content("contact", "", {"contacts": [_card(card) for card in cards]})


def _button(part: Mapping[str, Any]) -> Content:
    title = text(part, "selectedDisplayText")
    media = compact(type="button_reply", id=text(part, "selectedButtonId"), title=title)
    return Content("interactive", title or "", media)


def _list(part: Mapping[str, Any]) -> Content:
    title = text(part, "title")
    row = text(sub(part, "singleSelectReply"), "selectedRowId")
    media = compact(type="list_reply", id=row, title=title, description=text(part, "description"))
    return Content("interactive", title or "", media)


def _template_button(part: Mapping[str, Any]) -> Content:
    title = text(part, "selectedDisplayText")
    media = compact(
        type="button",
        id=text(part, "selectedId"),
        title=title,
        index=integer(part.get("selectedIndex")),
    )
    return Content("interactive", title or "", media)


def _flow(part: Mapping[str, Any]) -> Content:
    flow = sub(part, "nativeFlowResponseMessage")
    media = compact(
        type="nfm_reply", name=text(flow, "name"), response_json=text(flow, "paramsJson")
    )
    return Content("interactive", text(sub(part, "body"), "text") or "", media)


_READERS: dict[str, Callable[[Mapping[str, Any]], Content]] = {
    "extendedTextMessage": lambda part: Content("text", text(part, "text") or ""),
    "imageMessage": _image,
    "videoMessage": _video,
    "ptvMessage": lambda part: _video(part, note=True),
    "audioMessage": _audio,
    "documentMessage": _document,
    "stickerMessage": _sticker,
    "locationMessage": _location,
    "liveLocationMessage": lambda part: _location(part, live=True),
    "contactMessage": _contacts,
    "contactsArrayMessage": _contacts,
    "buttonsResponseMessage": _button,
    "listResponseMessage": _list,
    "templateButtonReplyMessage": _template_button,
    "interactiveResponseMessage": _flow,
}
