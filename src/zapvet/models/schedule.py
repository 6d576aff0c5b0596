"""Opening hours per weekday and closure days, in the organization's timezone."""

from __future__ import annotations

from datetime import date, time

from sqlalchemy import CheckConstraint, SmallInteger, Text, Time, UniqueConstraint
from sqlmodel import Field, SQLModel

from zapvet.models.base import id_field, org_field

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
