"""Instance connection state, read receipts and the typing indicator (issue 18).

`instance_connections` keeps, per instance, what Evolution last said about its link to
WhatsApp (`connection.update`, `qrcode.updated`), when that changed, and when the owners
were last told it went down. `ai_settings.read_receipts` and `typing_indicator` are the
organization file's `[ai]` switches, on by default.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 04:50:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instance_connections",
        sa.Column("instance_id", sa.BigInteger(), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Integer(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('open', 'connecting', 'close', 'refused', 'qrcode')",
            name=op.f("ck_instance_connections_state"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "instance_id"],
            ["whatsapp_instances.organization_id", "whatsapp_instances.id"],
            name="fk_instance_id_same_org_whatsapp_instances",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_instance_connections_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_instance_connections")),
    )
    for column in ("read_receipts", "typing_indicator"):
        op.add_column(
            "ai_settings",
            sa.Column(column, sa.Boolean(), nullable=False, server_default=sa.true()),
        )


def downgrade() -> None:
    op.drop_column("ai_settings", "typing_indicator")
    op.drop_column("ai_settings", "read_receipts")
    op.drop_table("instance_connections")
