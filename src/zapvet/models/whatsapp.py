"""WhatsApp instances (gateway connections) with their provider secrets, owner numbers, and
the Cloud API templates for messages sent outside the 24-hour window."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import BigInteger, CheckConstraint, DateTime, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from zapvet.models.base import (
    created_field,
    id_field,
    org_field,
    org_fk,
    org_unique,
    updated_field,
)

Provider = Literal["evolution", "cloud"]
#: Evolution's `connection.update` states, and `qrcode` for "waiting for the QR code to be
#: scanned" (`qrcode.updated`); `refused` is Evolution's "QR code limit reached".
ConnectionState = Literal["open", "connecting", "close", "refused", "qrcode"]
CONNECTION_STATES: tuple[ConnectionState, ...] = (
    "open",
    "connecting",
    "close",
    "refused",
    "qrcode",
)


class WhatsAppInstance(SQLModel, table=True):
    """One WhatsApp number connected through Evolution API or the Cloud API.

    `instance` is the Evolution instance name, or the Cloud API phone_number_id; webhooks
    find their instance by it. Secrets stay in the database, never in logs or spans.
    """

    __tablename__ = "whatsapp_instances"
    __table_args__ = (
        org_unique("whatsapp_instances"),
        UniqueConstraint("provider", "instance"),
        CheckConstraint("provider IN ('evolution', 'cloud')", name="provider"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    provider: Provider = Field(sa_type=String(16))
    instance: str = Field(max_length=128)
    api_url: str = Field(max_length=500)
    api_key: str | None = Field(default=None, max_length=500)
    webhook_token: str | None = Field(default=None, max_length=500)
    access_token: str | None = Field(default=None, max_length=1000)
    app_secret: str | None = Field(default=None, max_length=500)
    verify_token: str | None = Field(default=None, max_length=500)
    phone_number_id: str | None = Field(default=None, max_length=64)
    is_active: bool = Field(default=True)
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()


class AuroraOwnerNumber(SQLModel, table=True):
    """A phone allowed to talk to Aurora, the owner's assistant.

    `phone_key` is the number in canonical form (Brazilian mobiles without the ninth digit),
    so that both spellings WhatsApp may deliver match it; `lid` and `bsuid` are learnt.
    """

    __tablename__ = "aurora_owner_numbers"
    __table_args__ = (
        org_unique("aurora_owner_numbers"),
        UniqueConstraint("organization_id", "phone_key"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    name: str = Field(default="", max_length=200)
    phone: str = Field(max_length=32)
    phone_key: str = Field(max_length=32)
    lid: str | None = Field(default=None, max_length=64)
    bsuid: str | None = Field(default=None, max_length=64)
    is_active: bool = Field(default=True)
    created_at: datetime = created_field()


class WhatsAppTemplate(SQLModel, table=True):
    """The approved Cloud API template for one proactive kind (`[[templates]]`): its name,
    language, and the parameter names its body's `{{1}}`, `{{2}}`… are filled with."""

    __tablename__ = "whatsapp_templates"
    __table_args__ = (
        org_unique("whatsapp_templates"),
        UniqueConstraint("organization_id", "kind"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    kind: str = Field(sa_type=String(32))
    name: str = Field(max_length=512)
    language: str = Field(max_length=16)
    parameters: list[str] = Field(default_factory=list, sa_type=JSONB)
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()


class InstanceConnection(SQLModel, table=True):
    """What the gateway last said about an instance's link to WhatsApp (migration 0011).

    One row per instance that ever reported (Evolution's `connection.update` and
    `qrcode.updated`); the Cloud API reports nothing of the kind, so its instances have none.
    `changed_at` is when `state` last changed, `seen_at` the last event; `alerted_at` is
    when the owners were last told it went down, so one outage is announced once.
    """

    __tablename__ = "instance_connections"
    __table_args__ = (
        org_fk("instance_id", "whatsapp_instances"),
        CheckConstraint(
            "state IN ('open', 'connecting', 'close', 'refused', 'qrcode')", name="state"
        ),
    )

    instance_id: int = Field(sa_type=BigInteger, primary_key=True)
    organization_id: int = org_field()
    state: ConnectionState = Field(sa_type=String(16))
    #: Evolution's `statusReason` (Baileys' DisconnectReason: 401 logged out, 440 replaced…).
    reason: int | None = Field(default=None)
    changed_at: datetime = Field(sa_type=DateTime(timezone=True))
    seen_at: datetime = Field(sa_type=DateTime(timezone=True))
    alerted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
