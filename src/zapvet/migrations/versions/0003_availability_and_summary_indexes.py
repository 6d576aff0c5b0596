"""Indexes that keep availability and the owner's summary flat as history grows.

`ix_appointments_resource_end` bounds the overlap query of availability by what is still
ahead of the window; `ix_contacts_org_opted_out` lets the summary count opted-out clients
without reading every contact (bench/scale.py, docs/benchmarks.md section 4).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:50:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_appointments_resource_end", "appointments", ["resource_id", "ends_at"], unique=False
    )
    op.create_index(
        "ix_contacts_org_opted_out",
        "contacts",
        ["organization_id"],
        unique=False,
        postgresql_where=sa.text("opted_out_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_contacts_org_opted_out",
        table_name="contacts",
        postgresql_where=sa.text("opted_out_at IS NOT NULL"),
    )
    op.drop_index("ix_appointments_resource_end", table_name="appointments")
