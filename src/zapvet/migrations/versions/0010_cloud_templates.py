"""Cloud API templates for proactive messages outside the 24-hour window (issue 18).

`whatsapp_templates` keeps `[[templates]]`: per organization and proactive kind, the
approved template's name, language and parameter names in order. A proactive row keeps the
values those names are filled with (`template_values`), rendered when its text is. Two
indexes find a contact's latest incoming message, where the window starts: its
conversations (closed ones too), then each one's latest incoming message.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 05:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "whatsapp_templates",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_whatsapp_templates_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whatsapp_templates")),
        sa.UniqueConstraint("organization_id", "id", name="uq_whatsapp_templates_org_id"),
        sa.UniqueConstraint(
            "organization_id", "kind", name=op.f("uq_whatsapp_templates_organization_id_kind")
        ),
    )  # fmt: skip
    op.add_column(
        "aurora_proactive_messages",
        sa.Column("template_values", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.create_index("ix_conversations_contact", "conversations", ["organization_id", "contact_id"])
    op.create_index(
        "ix_messages_incoming_time",
        "messages",
        ["conversation_id", "message_at"],
        postgresql_where=sa.text("direction = 'incoming'"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_incoming_time", table_name="messages")
    op.drop_index("ix_conversations_contact", table_name="conversations")
    op.drop_column("aurora_proactive_messages", "template_values")
    op.drop_table("whatsapp_templates")
