"""What a webhook means, whatever the provider: the normalised events the parsers produce.

Evolution API and the Cloud API describe the same things in different shapes; the parsers
turn a payload into a list of these, and everything after the parsers (ingest, the drain,
the agents) sees only these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from zapvet.errors import PayloadError as PayloadError
from zapvet.models.conversation import MessageType
from zapvet.models.whatsapp import ConnectionState

DeliveryStatus = Literal["sent", "delivered", "read", "played", "failed"]


@dataclass(frozen=True)
class Sender:
    """Every identity the payload gave for the person writing.

    `phone` is international digits exactly as WhatsApp sent them (a legacy Brazilian
    account may lack the ninth digit); `lid` is the LID user part ("203948571726354");
    `bsuid` is the Cloud API business-scoped user id ("BR.1349…").
    """

    phone: str | None = None
    lid: str | None = None
    bsuid: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Inbound:
    """A message in a 1:1 chat, from the customer, or typed by staff on the business phone
    (`from_me`). `chat_id` is the address to reply to, exactly as received."""

    provider_id: str
    chat_id: str
    sender: Sender
    from_me: bool
    sent_at: datetime
    kind: MessageType
    text: str = ""
    media: dict[str, Any] | None = None
    reply_to: str | None = None
    #: The media's bytes as base64, when the webhook carried them (Evolution's "webhook
    #: base64"): handed to the worker through Redis, never stored in PostgreSQL.
    inline_media: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Edit:
    """The author changed the text of an earlier message."""

    target_id: str
    chat_id: str
    text: str
    sent_at: datetime | None = None


@dataclass(frozen=True)
class Delete:
    """The author deleted ("apagar para todos") an earlier message."""

    target_id: str
    chat_id: str


@dataclass(frozen=True)
class Reaction:
    """An emoji on an earlier message; an empty emoji removes the reaction."""

    provider_id: str
    target_id: str
    chat_id: str
    sender: Sender
    from_me: bool
    emoji: str
    sent_at: datetime


@dataclass(frozen=True)
class Status:
    """Delivery news about a message we sent."""

    provider_id: str
    status: DeliveryStatus
    error: str | None = None


@dataclass(frozen=True)
class Connection:
    """The gateway's link to WhatsApp changed (Evolution `connection.update`, `qrcode.updated`).

    `reason` is Baileys' DisconnectReason as Evolution reports it (`statusReason`: 200 when
    nothing went wrong, 401 logged out, 403 forbidden, 440 replaced by another session).
    """

    state: ConnectionState
    reason: int | None = None


@dataclass(frozen=True)
class Ignored:
    """Deliberately not processed (groups, Status, newsletters, receipts, our own sends…)."""

    reason: str
    details: dict[str, Any] = field(default_factory=dict)


Event = Inbound | Edit | Delete | Reaction | Status | Connection | Ignored
