"""A record of every agent turn: model, tokens, outcome, ungrounded facts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import CheckConstraint, Index, String, Text
from sqlmodel import Field, SQLModel

from zapvet.models.base import created_field, id_field, org_field, org_fk, ref_field

AIType = Literal["client", "aurora"]
InteractionStatus = Literal["success", "error"]


class AIInteraction(SQLModel, table=True):
    """One agent turn (successful or not), for cost, quality and failure accounting."""

    __tablename__ = "ai_interactions"
    __table_args__ = (
        org_fk("conversation_id", "conversations"),
        CheckConstraint("ai_type IN ('client', 'aurora')", name="ai_type"),
        CheckConstraint("status IN ('success', 'error')", name="status"),
        Index("ix_ai_interactions_org_created", "organization_id", "created_at"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    conversation_id: int | None = ref_field(nullable=True, index=True)
    ai_type: AIType = Field(sa_type=String(8))
    status: InteractionStatus = Field(sa_type=String(8))
    error_message: str | None = Field(default=None, sa_type=Text)
    model: str | None = Field(default=None, max_length=100)
    input_tokens: int = Field(default=0)
    output_tokens: int = Field(default=0)
    cached_input_tokens: int = Field(default=0)
    tool_calls: int = Field(default=0)
    ungrounded_facts: int = Field(default=0)
    duration_ms: int | None = Field(default=None)
    #: Seconds of audio transcribed for the turn, and images shown to the model: their cost.
    audio_seconds: float = Field(default=0.0)
    images: int = Field(default=0)
    created_at: datetime = created_field()
