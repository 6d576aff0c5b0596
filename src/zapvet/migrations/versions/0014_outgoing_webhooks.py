"""Outgoing webhooks (issue 19): `[[webhooks]]`, the events outbox and their deliveries.

`webhook_endpoints` keeps `[[webhooks]]` and is part of the cached configuration (the
config-version trigger of migration 0005), `webhook_events` is the outbox written in the
transaction of each change, `webhook_deliveries` one row per event and endpoint.
`ai_settings.webhook_message_text` is `[privacy] webhook_message_text`.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 07:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _times() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    ]


def _org(table: str) -> list[Any]:
    return [
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f(f"fk_{table}_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("organization_id", "id", name=f"uq_{table}_org_id"),
    ]


def upgrade() -> None:
    op.add_column(
        "ai_settings",
        sa.Column("webhook_message_text", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_table(
        "webhook_endpoints",
        *_org("webhook_endpoints"),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("events", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("allow_private_targets", sa.Boolean(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        *_times(),
        sa.UniqueConstraint(
            "organization_id", "url", name=op.f("uq_webhook_endpoints_organization_id_url")
        ),
    )
    op.execute(
        "CREATE TRIGGER webhook_endpoints_config_version AFTER INSERT OR UPDATE OR DELETE "
        "ON webhook_endpoints FOR EACH ROW EXECUTE FUNCTION zapvet_bump_config_version()"
    )
    op.create_table(
        "webhook_events",
        *_org("webhook_events"),
        sa.Column("uid", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "contact_id"],
            ["contacts.organization_id", "contacts.id"],
            name="fk_contact_id_same_org_contacts",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("uid", name=op.f("uq_webhook_events_uid")),
    )
    op.create_index(
        "ix_webhook_events_contact", "webhook_events", ["organization_id", "contact_id"]
    )
    op.create_table(
        "webhook_deliveries",
        *_org("webhook_deliveries"),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("endpoint_id", sa.BigInteger(), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_from", sa.DateTime(timezone=True), nullable=False),
        *_times(),
        sa.ForeignKeyConstraint(
            ["organization_id", "event_id"],
            ["webhook_events.organization_id", "webhook_events.id"],
            name="fk_event_id_same_org_webhook_events",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "endpoint_id"],
            ["webhook_endpoints.organization_id", "webhook_endpoints.id"],
            name="fk_endpoint_id_same_org_webhook_endpoints",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "event_id", "endpoint_id", name=op.f("uq_webhook_deliveries_event_id_endpoint_id")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'queued', 'delivered', 'dead')",
            name=op.f("ck_webhook_deliveries_delivery_status"),
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('pending', 'queued')"),
    )
    op.create_index(
        "ix_webhook_deliveries_line",
        "webhook_deliveries",
        ["endpoint_id", "resource", "id"],
        postgresql_where=sa.text("status IN ('pending', 'queued')"),
    )
    op.create_index("ix_webhook_deliveries_recent", "webhook_deliveries", ["organization_id", "id"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_events")
    op.execute("DROP TRIGGER webhook_endpoints_config_version ON webhook_endpoints")
    op.drop_table("webhook_endpoints")
    op.drop_column("ai_settings", "webhook_message_text")
