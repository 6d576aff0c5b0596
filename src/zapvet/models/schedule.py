"""Opening hours per weekday and closure days, in the organization's timezone; the agenda's
calendar feeds."""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import CheckConstraint, Index, SmallInteger, String, Text, Time, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlmodel import Field, SQLModel

from zapvet.models.base import created_field, id_field, org_field, org_fk, ref_field

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class BusinessHours(SQLModel, table=True):
    """One opening interval on a weekday (0 = Monday), local wall-clock times."""

    __tablename__ = "business_hours"
    __table_args__ = (
        UniqueConstraint("organization_id", "weekday", "opens_at"),
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint("opens_at < closes_at", name="interval"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    weekday: int = Field(sa_type=SmallInteger)
    opens_at: time = Field(sa_type=Time)
    closes_at: time = Field(sa_type=Time)


class Closure(SQLModel, table=True):
    """A whole local day on which the business does not open (holidays, vacations)."""

    __tablename__ = "closures"
    __table_args__ = (UniqueConstraint("organization_id", "date"),)

    id: int | None = id_field()
    organization_id: int = org_field()
    date: date
    reason: str | None = Field(default=None, sa_type=Text)


class CalendarFeed(SQLModel, table=True):
    """A read-only iCalendar feed of the agenda (`GET /calendar/{token}.ics`): the whole
    organization's (`resource_id` NULL) or one resource's. Only the token's SHA-256 is kept,
    so the URL is shown once, when `zapvet calendar rotate` makes it; rotating replaces it."""

    __tablename__ = "calendar_feeds"
    __table_args__ = (
        org_fk("resource_id", "resources"),
        UniqueConstraint("token_sha256"),
        Index(
            "uq_calendar_feeds_organization",
            "organization_id",
            unique=True,
            postgresql_where=sql_text("resource_id IS NULL"),
        ),
        Index(
            "uq_calendar_feeds_resource",
            "organization_id",
            "resource_id",
            unique=True,
            postgresql_where=sql_text("resource_id IS NOT NULL"),
        ),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    resource_id: int | None = ref_field(nullable=True)
    token_sha256: str = Field(sa_type=String(64))
    created_at: datetime = created_field()
