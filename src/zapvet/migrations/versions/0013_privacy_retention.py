"""Retention of message contents and transcripts (issue 19): `[privacy]`.

`ai_settings.message_retention_days` and `transcript_retention_days` (NULL: kept until the
contact is forgotten); the scheduler erases older contents and keeps the rows.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 05:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("message_retention_days", "transcript_retention_days")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("ai_settings", sa.Column(name, sa.Integer(), nullable=True))
        op.create_check_constraint(op.f(f"ck_ai_settings_{name}"), "ai_settings", f"{name} > 0")


def downgrade() -> None:
    for name in reversed(COLUMNS):
        op.drop_constraint(op.f(f"ck_ai_settings_{name}"), "ai_settings", type_="check")
        op.drop_column("ai_settings", name)
