"""Messages Aurora sends on her own: alerts to the owner, reminders to clients, summaries."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import CheckConstraint, Index, String, Text, text
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

ProactiveType = Literal["escalation_alert", "appointment_reminder", "daily_summary", "custom"]
ProactiveStatus = Literal["pending", "sending", "sent", "failed", "skipped", "cancelled"]


class AuroraProactiveMessage(SQLModel, table=True):
    """A message Aurora schedules herself; `dedupe_key` makes scheduling idempotent."""

    __tablename__ = "aurora_proactive_messages"
    __table_args__ = (
        org_unique("aurora_proactive_messages"),
        org_fk("owner_number_id", "aurora_owner_numbers"),
        org_fk("contact_id", "contacts"),
        org_fk("appointment_id", "appointments"),
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
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    owner_number_id: int | None = ref_field(nullable=True)
    contact_id: int | None = ref_field(nullable=True)
    appointment_id: int | None = ref_field(nullable=True)
    message_type: ProactiveType = Field(sa_type=String(32))
    content: str = Field(default="", sa_type=Text)
    scheduled_for: datetime = moment_field(nullable=False)
    status: ProactiveStatus = Field(default="pending", sa_type=String(16))
    sent_at: datetime | None = moment_field()
    dedupe_key: str | None = Field(default=None, max_length=200)
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_field()
