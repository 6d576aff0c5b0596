"""An organization's AI price table: the organization file's `[pricing]`, kept as JSON.

`zapvet org apply` writes it; cost figures (`zapvet stats --org`, Aurora's `ai_costs`,
`GET /metrics`) lay it over the built-in table in `zapvet.pricing`. NULL: the built-in table.
`ai_settings` already bumps the organization's configuration version on change (0005).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 01:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ai_settings", sa.Column("pricing", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("ai_settings", "pricing")
