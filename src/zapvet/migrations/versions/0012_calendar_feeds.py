"""Calendar feeds of the agenda (issue 19): `GET /calendar/{token}.ics`.

One feed per organization (`resource_id` NULL) and per resource; only the token's SHA-256 is
stored, and `zapvet calendar rotate` replaces it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 05:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calendar_feeds",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("resource_id", sa.BigInteger(), nullable=True),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_calendar_feeds_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "resource_id"],
            ["resources.organization_id", "resources.id"],
            name="fk_resource_id_same_org_resources",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_feeds")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_calendar_feeds_token_sha256")),
    )
    op.create_index(
        "uq_calendar_feeds_organization",
        "calendar_feeds",
        ["organization_id"],
        unique=True,
        postgresql_where=sa.text("resource_id IS NULL"),
    )
    op.create_index(
        "uq_calendar_feeds_resource",
        "calendar_feeds",
        ["organization_id", "resource_id"],
        unique=True,
        postgresql_where=sa.text("resource_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_calendar_feeds_resource", table_name="calendar_feeds")
    op.drop_index("uq_calendar_feeds_organization", table_name="calendar_feeds")
    op.drop_table("calendar_feeds")
