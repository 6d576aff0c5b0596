"""WhatsApp instances (gateway connections) with their provider secrets, owner numbers, and
the Cloud API templates for messages sent outside the 24-hour window."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import CheckConstraint, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from zapvet.models.base import created_field, id_field, org_field, org_unique, updated_field

Provider = Literal["evolution", "cloud"]


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
