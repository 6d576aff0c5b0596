"""Outgoing webhooks (issue 19): endpoints from `[[webhooks]]`, the events outbox, deliveries.

An event is written in the transaction of the change that caused it, with one delivery per
enabled endpoint subscribed to its type; nothing is written when no endpoint listens. A
delivery is `pending` until the scheduler hands it to the delivery actor (`queued`, leased
until `next_attempt_at`), then `delivered`, or `dead` once its event is 24 hours old and the
receiver still refuses it. Deliveries of one endpoint about one `resource` leave in order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from sqlalchemy import (
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
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
    updated_field,
)

DeliveryStatus = Literal["pending", "queued", "delivered", "dead"]


class WebhookEndpoint(SQLModel, table=True):
    """One `[[webhooks]]` entry: where events go, signed with `secret`.

    `disabled_at` is set when the receiver answered 410 Gone (the owners are told); `zapvet
    webhooks enable` or a changed `url` clears it. Part of the cached configuration (its
    changes bump `organizations.config_version`), so a turn knows without a query whether
    anyone listens to an event."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        org_unique("webhook_endpoints"),
        UniqueConstraint("organization_id", "url"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    url: str = Field(sa_type=Text)
    secret: str = Field(sa_type=Text)
    #: Event types, e.g. ["appointment.created", "message.received"].
    events: list[str] = Field(default_factory=list, sa_type=JSONB)
    enabled: bool = Field(default=True)
    #: Development and tests only: plain http and private, loopback or link-local addresses.
    allow_private_targets: bool = Field(default=False)
    disabled_at: datetime | None = moment_field()
    disabled_reason: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()

    def listens_to(self, event_type: str) -> bool:
        return self.enabled and self.disabled_at is None and event_type in self.events


class WebhookEvent(SQLModel, table=True):
    """One event as receivers see it (`data` is the envelope's `data`); `uid` is its public,
    idempotency id. `contact_id` names the person it is about (LGPD export and erasure)."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        org_unique("webhook_events"),
        org_fk("contact_id", "contacts", ondelete="CASCADE"),
        UniqueConstraint("uid"),
        Index("ix_webhook_events_contact", "organization_id", "contact_id"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    uid: UUID = Field(default_factory=uuid4)
    type: str = Field(sa_type=String(40))
    #: What ordering is kept by, e.g. "appointment:12", "conversation:7".
    resource: str = Field(sa_type=String(64))
    contact_id: int | None = ref_field(nullable=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    created_at: datetime = created_field()


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint, and how its delivery went."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        org_unique("webhook_deliveries"),
        ForeignKeyConstraint(
            ["organization_id", "event_id"],
            ["webhook_events.organization_id", "webhook_events.id"],
            ondelete="CASCADE",
            name="fk_event_id_same_org_webhook_events",
        ),
        ForeignKeyConstraint(
            ["organization_id", "endpoint_id"],
            ["webhook_endpoints.organization_id", "webhook_endpoints.id"],
            ondelete="CASCADE",
            name="fk_endpoint_id_same_org_webhook_endpoints",
        ),
        UniqueConstraint("event_id", "endpoint_id"),
        CheckConstraint(
            "status IN ('pending', 'queued', 'delivered', 'dead')", name="delivery_status"
        ),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=sql_text("status IN ('pending', 'queued')"),
        ),
        Index(
            "ix_webhook_deliveries_line",
            "endpoint_id",
            "resource",
            "id",
            postgresql_where=sql_text("status IN ('pending', 'queued')"),
        ),
        Index("ix_webhook_deliveries_recent", "organization_id", "id"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    event_id: int = ref_field()
    endpoint_id: int = ref_field()
    #: The event's `resource`, copied so the line of one endpoint's resource is one index.
    resource: str = Field(sa_type=String(64))
    status: str = Field(default="pending", sa_type=String(16))
    attempts: int = Field(default=0)
    #: When it is due (`pending`), or when its lease ends (`queued`).
    next_attempt_at: datetime = moment_field(nullable=False)
    last_status_code: int | None = Field(default=None)
    #: A short, scrubbed excerpt of the last failure (never the whole response body).
    last_error: str | None = Field(default=None, sa_type=Text)
    delivered_at: datetime | None = moment_field()
    #: Failures past `RETRY_FOR` after this make it dead: its event's time, or when
    #: `zapvet webhooks requeue` gave it another day.
    retry_from: datetime = moment_field(nullable=False)
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()
