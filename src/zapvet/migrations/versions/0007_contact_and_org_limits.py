"""Per-contact and per-organization limits on what the AI answers (issue 17).

`[limits]` in the organization file: messages answered per contact per minute and per day,
model turns per organization per minute, and the fast exchanges after which a conversation
that looks like our bot talking to another bot goes to a person. They live in `ai_settings`, whose changes
already bump the organization's configuration version (0005), so a change applies from the
next turn without a restart.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 02:10:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIMITS = {
    "contact_messages_per_minute": 20,
    "contact_messages_per_day": 300,
    "org_turns_per_minute": 600,
    "bot_loop_exchanges": 6,
}


def upgrade() -> None:
    for name, default in LIMITS.items():
        op.add_column(
            "ai_settings",
            sa.Column(name, sa.Integer(), nullable=False, server_default=str(default)),
        )
        floor = 0 if name == "bot_loop_exchanges" else 1  # 0 turns loop detection off
        op.create_check_constraint(
            op.f(f"ck_ai_settings_{name}"), "ai_settings", f"{name} >= {floor}"
        )
    # Counting a contact's answered messages in the last minute and day, per turn (a shop's
    # turns are counted on ix_ai_interactions_org_created).
    op.create_index(
        "ix_messages_answered",
        "messages",
        ["conversation_id", "processed_at"],
        postgresql_where=sa.text("direction = 'incoming' AND status = 'processed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_answered", table_name="messages")
    for name in LIMITS:
        op.drop_constraint(op.f(f"ck_ai_settings_{name}"), "ai_settings", type_="check")
        op.drop_column("ai_settings", name)
