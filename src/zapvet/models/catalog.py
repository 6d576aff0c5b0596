"""What the business sells (services) and who or what performs it (resources)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from zapvet.models.base import (
    created_field,
    id_field,
    org_field,
    org_fk,
    org_unique,
    updated_field,
)


class Service(SQLModel, table=True):
    """A bookable service with its duration and price in integer cents."""

    __tablename__ = "services"
    __table_args__ = (
        org_unique("services"),
        UniqueConstraint("organization_id", "name"),
        CheckConstraint("duration_minutes BETWEEN 5 AND 1440", name="duration_minutes"),
        CheckConstraint("price_cents >= 0", name="price_cents"),
        CheckConstraint(
            "return_after_days IS NULL OR return_after_days BETWEEN 1 AND 3650",
            name="return_after_days",
        ),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    name: str = Field(max_length=200)
    category: str = Field(max_length=50, index=True)
    duration_minutes: int
    price_cents: int = Field(sa_type=BigInteger)
    description: str | None = Field(default=None, sa_type=Text)
    is_active: bool = Field(default=True)
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()
    # Last, where migration 0009 added it: some tools copy rows by column position.
    #: Days after a completed appointment when the pet is due again (care cycles, migration
    #: 0009); None: the service has no cycle and nobody is invited back for it.
    return_after_days: int | None = Field(default=None)


class Resource(SQLModel, table=True):
    """A person, table or room that performs services, `capacity` appointments at a time.

    `booking_seq` is bumped by the appointments trigger on every booking, which serialises
    concurrent bookings of one resource (see the capacity trigger in the migrations).
    """

    __tablename__ = "resources"
    __table_args__ = (
        org_unique("resources"),
        UniqueConstraint("organization_id", "name"),
        CheckConstraint("capacity BETWEEN 1 AND 100", name="capacity"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    name: str = Field(max_length=200)
    capacity: int = Field(default=1)
    is_active: bool = Field(default=True)
    booking_seq: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()


class ResourceService(SQLModel, table=True):
    """Which services a resource performs."""

    __tablename__ = "resource_services"
    __table_args__ = (
        org_fk("resource_id", "resources"),
        org_fk("service_id", "services"),
    )

    organization_id: int = org_field()
    resource_id: int = Field(sa_type=BigInteger, primary_key=True)
    service_id: int = Field(sa_type=BigInteger, primary_key=True, index=True)
