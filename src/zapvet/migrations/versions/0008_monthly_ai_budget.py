"""A monthly AI budget per organization (issue 17).

`[limits] monthly_budget_brl` (kept in centavos; NULL: no budget) and `over_budget`, what
customers' conversations get once the month's AI cost reaches it. They live in
`ai_settings`, whose changes bump the organization's configuration version (0005), so
raising the budget applies from the next turn without a restart. The owners' alerts at
80 % and 100 % are `aurora_proactive_messages` rows whose `dedupe_key` the existing unique
index keeps to one per month, level and budget.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 04:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ai_settings", sa.Column("monthly_budget_cents", sa.BigInteger(), nullable=True))
    op.add_column(
        "ai_settings",
        sa.Column(
            "over_budget", sa.String(length=16), nullable=False, server_default="hand_to_human"
        ),
    )
    op.create_check_constraint(
        op.f("ck_ai_settings_monthly_budget_cents"), "ai_settings", "monthly_budget_cents >= 0"
    )
    op.create_check_constraint(
        op.f("ck_ai_settings_over_budget"),
        "ai_settings",
        "over_budget IN ('hand_to_human', 'fallback_only')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_ai_settings_over_budget"), "ai_settings", type_="check")
    op.drop_constraint(op.f("ck_ai_settings_monthly_budget_cents"), "ai_settings", type_="check")
    op.drop_column("ai_settings", "over_budget")
    op.drop_column("ai_settings", "monthly_budget_cents")
