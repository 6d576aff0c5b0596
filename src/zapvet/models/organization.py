"""Organizations (tenants) with their booking policy, and their AI settings."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any, Literal

from sqlalchemy import BigInteger, CheckConstraint, String, Text, Time
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from zapvet.models.base import created_field, id_field, updated_field


class Organization(SQLModel, table=True):
    """A pet shop or clinic: one WhatsApp business, one timezone, one catalogue."""

    __tablename__ = "organizations"
    __table_args__ = (
        CheckConstraint("slot_minutes BETWEEN 5 AND 240", name="slot_minutes"),
        CheckConstraint("min_lead_minutes >= 0", name="min_lead_minutes"),
        CheckConstraint("booking_horizon_days BETWEEN 1 AND 365", name="booking_horizon_days"),
    )

    id: int | None = id_field()
    slug: str = Field(max_length=63, unique=True)
    name: str = Field(max_length=200)
    timezone: str = Field(default="America/Sao_Paulo", max_length=64)
    slot_minutes: int = Field(default=30)
    min_lead_minutes: int = Field(default=60)
    booking_horizon_days: int = Field(default=60)
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()
    #: Bumped by the database on any change to the organization's configuration rows
    #: (migration 0005): what `zapvet.models.config.ConfigCache` checks per turn.
    config_version: int = Field(
        default=1, sa_type=BigInteger, sa_column_kwargs={"server_default": "1"}
    )


#: `[limits]` defaults: generous for a person (a burst of messages is one turn), tight for a
#: flood or another bot. Documented in README ("Limits").
LIMIT_DEFAULTS = {
    "contact_messages_per_minute": 20,
    "contact_messages_per_day": 300,
    "org_turns_per_minute": 600,
    "bot_loop_exchanges": 6,
}

#: `[limits] over_budget`: what customers' conversations get once the month's AI cost reaches
#: `monthly_budget_brl` (a person takes over, or a fixed reply without the model).
OverBudget = Literal["hand_to_human", "fallback_only"]
OVER_BUDGET_BEHAVIOURS: tuple[OverBudget, ...] = ("hand_to_human", "fallback_only")

#: `[care]` defaults (care cycles, migration 0009): off until the owner turns it on; when on,
#: invitations leave 09:00-18:00 local, Monday to Saturday (bit 0 = Monday), at most 20 a
#: day per organization, and a pet is not invited about the same service twice in 30 days.
CARE_DEFAULTS = {
    "care_enabled": False,
    "care_hours_start": time(9),
    "care_hours_end": time(18),
    "care_weekdays": 0b0111111,
    "care_daily_cap": 20,
    "care_cooldown_days": 30,
}


class AISettings(SQLModel, table=True):
    """How the organization's agents behave: model, tone, batching, hand-over, reminders."""

    __tablename__ = "ai_settings"
    __table_args__ = (
        CheckConstraint("temperature >= 0 AND temperature <= 2", name="temperature"),
        CheckConstraint("debounce_seconds >= 0 AND debounce_seconds <= 60", name="debounce"),
        CheckConstraint("human_takeover_minutes > 0", name="human_takeover_minutes"),
        CheckConstraint("confirmation_ttl_minutes > 0", name="confirmation_ttl_minutes"),
        CheckConstraint("reminder_minutes_before > 0", name="reminder_minutes_before"),
        *(
            CheckConstraint(f"{name} >= {0 if name == 'bot_loop_exchanges' else 1}", name=name)
            for name in LIMIT_DEFAULTS
        ),
        CheckConstraint("monthly_budget_cents >= 0", name="monthly_budget_cents"),
        CheckConstraint("over_budget IN ('hand_to_human', 'fallback_only')", name="over_budget"),
        CheckConstraint("message_retention_days > 0", name="message_retention_days"),
        CheckConstraint("transcript_retention_days > 0", name="transcript_retention_days"),
        CheckConstraint("care_hours_start < care_hours_end", name="care_hours"),
        CheckConstraint("care_weekdays BETWEEN 0 AND 127", name="care_weekdays"),
        CheckConstraint("care_daily_cap >= 0", name="care_daily_cap"),
        CheckConstraint("care_cooldown_days >= 1", name="care_cooldown_days"),
    )

    organization_id: int = Field(
        sa_type=BigInteger, foreign_key="organizations.id", ondelete="CASCADE", primary_key=True
    )
    model: str | None = Field(default=None, max_length=100)
    temperature: float = Field(default=0.3)
    personality: str = Field(default="", sa_type=Text)
    debounce_seconds: int = Field(default=3)
    #: Photos reach the chat model as images (the model must accept them).
    vision: bool = Field(default=True)
    #: The speech-to-text model for voice notes; None: `ZAPVET_TRANSCRIBE_MODEL`.
    transcribe_model: str | None = Field(default=None, max_length=100)
    human_takeover_minutes: int = Field(default=480)
    confirmation_ttl_minutes: int = Field(default=10)
    reminder_minutes_before: int = Field(default=60)
    quiet_hours_start: time | None = Field(default=None, sa_type=Time)
    quiet_hours_end: time | None = Field(default=None, sa_type=Time)
    daily_summary_at: time | None = Field(default=None, sa_type=Time)
    #: The organization file's `[pricing]` as `zapvet.pricing.stored_pricing` writes it
    #: (decimal strings); None: the built-in price table (migration 0006).
    pricing: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    #: `[limits]` (migration 0007): messages answered per contact per minute and per day,
    #: model turns per organization per minute.
    contact_messages_per_minute: int = Field(
        default=LIMIT_DEFAULTS["contact_messages_per_minute"],
        sa_column_kwargs={"server_default": str(LIMIT_DEFAULTS["contact_messages_per_minute"])},
    )
    contact_messages_per_day: int = Field(
        default=LIMIT_DEFAULTS["contact_messages_per_day"],
        sa_column_kwargs={"server_default": str(LIMIT_DEFAULTS["contact_messages_per_day"])},
    )
    org_turns_per_minute: int = Field(
        default=LIMIT_DEFAULTS["org_turns_per_minute"],
        sa_column_kwargs={"server_default": str(LIMIT_DEFAULTS["org_turns_per_minute"])},
    )
    #: Consecutive exchanges where the contact answered our reply within seconds, after
    #: which the conversation goes to a person (another bot answering ours); 0: off.
    bot_loop_exchanges: int = Field(
        default=LIMIT_DEFAULTS["bot_loop_exchanges"],
        sa_column_kwargs={"server_default": str(LIMIT_DEFAULTS["bot_loop_exchanges"])},
    )
    #: `[limits] monthly_budget_brl` in centavos (migration 0008): what the AI may cost in a
    #: calendar month of the organization's timezone; None: no budget.
    monthly_budget_cents: int | None = Field(default=None, sa_type=BigInteger)
    #: What customers' conversations get once the month's cost reaches the budget.
    over_budget: OverBudget = Field(
        default="hand_to_human",
        sa_type=String(16),
        sa_column_kwargs={"server_default": "hand_to_human"},
    )
    updated_at: datetime = updated_field()
    #: `[care]` (migration 0009, which added these columns last): whether due pets' tutors
    #: are invited back, in which local hours and weekdays (a bit per day, bit 0 = Monday),
    #: how many a day, and how long a pet waits before being invited about the same service
    #: again.
    care_enabled: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    care_hours_start: time = Field(
        default=CARE_DEFAULTS["care_hours_start"],
        sa_type=Time,
        sa_column_kwargs={"server_default": "09:00"},
    )
    care_hours_end: time = Field(
        default=CARE_DEFAULTS["care_hours_end"],
        sa_type=Time,
        sa_column_kwargs={"server_default": "18:00"},
    )
    care_weekdays: int = Field(
        default=CARE_DEFAULTS["care_weekdays"],
        sa_column_kwargs={"server_default": str(CARE_DEFAULTS["care_weekdays"])},
    )
    care_daily_cap: int = Field(
        default=CARE_DEFAULTS["care_daily_cap"],
        sa_column_kwargs={"server_default": str(CARE_DEFAULTS["care_daily_cap"])},
    )
    care_cooldown_days: int = Field(
        default=CARE_DEFAULTS["care_cooldown_days"],
        sa_column_kwargs={"server_default": str(CARE_DEFAULTS["care_cooldown_days"])},
    )
    #: `[ai] read_receipts` (migration 0011): the customer's messages are marked read when
    #: the agent answers them.
    read_receipts: bool = Field(default=True, sa_column_kwargs={"server_default": "true"})
    #: `[ai] typing_indicator`: "digitando…" while a turn runs (on the Cloud API the
    #: indicator also marks the message read, so it needs `read_receipts` too).
    typing_indicator: bool = Field(default=True, sa_column_kwargs={"server_default": "true"})
    #: `[privacy]` (migration 0013): days after which messages' contents, and media
    #: transcripts and extracted texts, are erased by the scheduler; None: kept.
    message_retention_days: int | None = Field(default=None)
    transcript_retention_days: int | None = Field(default=None)
    #: `[privacy] webhook_message_text` (migration 0014): `message.received` and
    #: `message.sent` webhook events carry the message's text; off: only its metadata.
    webhook_message_text: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
