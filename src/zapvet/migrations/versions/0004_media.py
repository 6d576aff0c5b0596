"""Media: the organization's vision and transcription settings, and what a turn's media cost.

Media bytes are never stored; what a message's media was (kind, MIME type, size, sha256,
duration, provider id) and its transcript or extracted text live in `messages.meta`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 19:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ai_settings", sa.Column("vision", sa.Boolean(), nullable=False, server_default="true")
    )
    op.add_column("ai_settings", sa.Column("transcribe_model", sa.String(100), nullable=True))
    op.add_column(
        "ai_interactions",
        sa.Column("audio_seconds", sa.Float(), nullable=False, server_default="0"),
    )
    op.add_column(
        "ai_interactions", sa.Column("images", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    op.drop_column("ai_interactions", "images")
    op.drop_column("ai_interactions", "audio_seconds")
    op.drop_column("ai_settings", "transcribe_model")
    op.drop_column("ai_settings", "vision")
