"""Messages Aurora sends on her own: alerts to the owner, reminders to clients, summaries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import BigInteger, CheckConstraint, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from zapvet.models.base import (
    created_field,
    id_field,
    moment_field,
    org_field,
    org_fk,
    org_unique,
    ref_field,
)

ProactiveType = Literal[
    "escalation_alert",
    "appointment_reminder",
    "daily_summary",
    "budget_alert",
    "erasure_request",
    "template_alert",
    "care_invitation",
    "connection_alert",
    "webhook_alert",
    "custom",
]
ProactiveStatus = Literal["pending", "sending", "sent", "failed", "skipped", "cancelled"]


class AuroraProactiveMessage(SQLModel, table=True):
    """A message Aurora schedules herself; `dedupe_key` makes scheduling idempotent."""

    __tablename__ = "aurora_proactive_messages"
    __table_args__ = (
        org_unique("aurora_proactive_messages"),
        org_fk("owner_number_id", "aurora_owner_numbers"),
        org_fk("contact_id", "contacts"),
        org_fk("appointment_id", "appointments"),
        org_fk("pet_id", "pets"),
        org_fk("service_id", "services"),
        CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed', 'skipped', 'cancelled')",
            name="status",
        ),
        CheckConstraint(
            "owner_number_id IS NOT NULL OR contact_id IS NOT NULL", name="has_recipient"
        ),
        Index(
            "uq_aurora_proactive_dedupe",
            "organization_id",
            "dedupe_key",
            unique=True,
            postgresql_where=text("dedupe_key IS NOT NULL"),
        ),
        Index(
            "ix_aurora_proactive_due",
            "scheduled_for",
            postgresql_where=text("status = 'pending'"),
        ),
        # Care cycles: the cooldown per pet and service, and the owner's report by send time.
        Index(
            "ix_aurora_proactive_care",
            "organization_id",
            "pet_id",
            "service_id",
            "scheduled_for",
            postgresql_where=text("pet_id IS NOT NULL"),
        ),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    owner_number_id: int | None = ref_field(nullable=True)
    contact_id: int | None = ref_field(nullable=True)
    appointment_id: int | None = ref_field(nullable=True)
    message_type: ProactiveType = Field(sa_type=String(32))
    content: str = Field(default="", sa_type=Text)
    #: The values a Cloud API template's parameters are filled with, by name (None: none).
    template_values: dict[str, str] | None = Field(default=None, sa_type=JSONB)
    scheduled_for: datetime = moment_field(nullable=False)
    status: ProactiveStatus = Field(default="pending", sa_type=String(16))
    sent_at: datetime | None = moment_field()
    dedupe_key: str | None = Field(default=None, max_length=200)
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_field()
    #: A care invitation's pet and service (migration 0009; last, where it added them).
    pet_id: int | None = ref_field(nullable=True)
    service_id: int | None = ref_field(nullable=True)


PendingStatus = Literal["pending", "confirmed", "cancelled", "expired", "failed"]


class AuroraPendingAction(SQLModel, table=True):
    """A write Aurora previewed and holds until the owner confirms it in a later message."""

    __tablename__ = "aurora_pending_actions"
    __table_args__ = (
        org_unique("aurora_pending_actions"),
        org_fk("owner_number_id", "aurora_owner_numbers"),
        CheckConstraint(
            "status IN ('pending', 'confirmed', 'cancelled', 'expired', 'failed')", name="status"
        ),
        Index(
            "ix_aurora_pending_open",
            "organization_id",
            "owner_number_id",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    owner_number_id: int = ref_field()
    action: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    preview: str = Field(default="", sa_type=Text)
    status: PendingStatus = Field(default="pending", sa_type=String(16))
    expires_at: datetime = moment_field(nullable=False)
    resolved_at: datetime | None = moment_field()
    result: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_field()


class AuditLog(SQLModel, table=True):
    """Who changed what, when, with the row before and after (every Aurora command)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_org_created", "organization_id", "created_at"),)

    id: int | None = id_field()
    organization_id: int = org_field()
    actor_kind: str = Field(max_length=16)
    actor_id: int | None = Field(default=None, sa_type=BigInteger)
    action: str = Field(max_length=64)
    entity: str = Field(max_length=64)
    entity_id: int | None = Field(default=None, sa_type=BigInteger)
    before: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    created_at: datetime = created_field()
