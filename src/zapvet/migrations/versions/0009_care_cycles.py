"""Care cycles (issue 18): invite a pet's tutor back when a recurring service is due.

`services.return_after_days` is the cycle of a service (NULL: none). `[care]` lives in
`ai_settings` (whose changes bump the configuration version, 0005): on or off, the local
hours and weekdays (a bit per day, bit 0 = Monday) when invitations may leave, a daily cap
per organization and a cooldown per pet and service. An invitation is an
`aurora_proactive_messages` row (`care_invitation`) naming its pet and service; its
`dedupe_key` (`care:<pet>:<service>:<appointment that started the cycle>`) and the existing
unique index keep it to one per pet, service and cycle, whoever schedules it.

Self-contained on 0008: it touches no column the other 0009+ migrations add.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 05:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CARE_CHECKS = {
    "care_hours": "care_hours_start < care_hours_end",
    "care_weekdays": "care_weekdays BETWEEN 0 AND 127",
    "care_daily_cap": "care_daily_cap >= 0",
    "care_cooldown_days": "care_cooldown_days >= 1",
}


def upgrade() -> None:
    op.add_column("services", sa.Column("return_after_days", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_services_return_after_days"),
        "services",
        "return_after_days IS NULL OR return_after_days BETWEEN 1 AND 3650",
    )

    columns: list[sa.Column[Any]] = [
        sa.Column("care_enabled", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("care_hours_start", sa.Time(), nullable=False, server_default="09:00"),
        sa.Column("care_hours_end", sa.Time(), nullable=False, server_default="18:00"),
        sa.Column("care_weekdays", sa.Integer(), nullable=False, server_default="63"),
        sa.Column("care_daily_cap", sa.Integer(), nullable=False, server_default="20"),
        sa.Column("care_cooldown_days", sa.Integer(), nullable=False, server_default="30"),
    ]
    for added in columns:
        op.add_column("ai_settings", added)
    for name, condition in _CARE_CHECKS.items():
        op.create_check_constraint(op.f(f"ck_ai_settings_{name}"), "ai_settings", condition)

    op.add_column("aurora_proactive_messages", sa.Column("pet_id", sa.BigInteger(), nullable=True))
    op.add_column(
        "aurora_proactive_messages", sa.Column("service_id", sa.BigInteger(), nullable=True)
    )
    for name, parent in (("pet_id", "pets"), ("service_id", "services")):
        op.create_foreign_key(
            f"fk_{name}_same_org_{parent}",
            "aurora_proactive_messages",
            parent,
            ["organization_id", name],
            ["organization_id", "id"],
            ondelete="CASCADE",
        )
    op.create_index(
        "ix_aurora_proactive_care",
        "aurora_proactive_messages",
        ["organization_id", "pet_id", "service_id", "scheduled_for"],
        postgresql_where=sa.text("pet_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_aurora_proactive_care", table_name="aurora_proactive_messages")
    for column, parent in (("pet_id", "pets"), ("service_id", "services")):
        op.drop_constraint(
            f"fk_{column}_same_org_{parent}", "aurora_proactive_messages", type_="foreignkey"
        )
    op.drop_column("aurora_proactive_messages", "service_id")
    op.drop_column("aurora_proactive_messages", "pet_id")
    for name in _CARE_CHECKS:
        op.drop_constraint(op.f(f"ck_ai_settings_{name}"), "ai_settings", type_="check")
    for name in ("care_cooldown_days", "care_daily_cap", "care_weekdays", "care_hours_end",
                 "care_hours_start", "care_enabled"):  # fmt: skip
        op.drop_column("ai_settings", name)
    op.drop_constraint(op.f("ck_services_return_after_days"), "services", type_="check")
    op.drop_column("services", "return_after_days")
