"""Appointments: a service for a contact's pet on a resource, at a time, for a price."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKeyConstraint, Index, String, Text
from sqlmodel import Field, SQLModel

from zapvet.models.base import (
    created_field,
    id_field,
    moment_field,
    org_field,
    org_fk,
    org_unique,
    ref_field,
    updated_field,
)

AppointmentStatus = Literal["scheduled", "confirmed", "completed", "cancelled", "no_show"]
AppointmentSource = Literal["client_ai", "aurora", "staff", "import"]

#: Statuses that hold a place on the resource (the capacity trigger counts these).
OCCUPYING_STATUSES: tuple[AppointmentStatus, ...] = ("scheduled", "confirmed", "completed")
#: Statuses a customer may still cancel or move.
UPCOMING_STATUSES: tuple[AppointmentStatus, ...] = ("scheduled", "confirmed")


class Appointment(SQLModel, table=True):
    """A booking. The database refuses overlaps beyond the resource's capacity.

    `price_cents` is the price agreed at booking time, so later catalogue changes never
    rewrite what a customer was told or what was earned.
    """

    __tablename__ = "appointments"
    __table_args__ = (
        org_unique("appointments"),
        org_fk("contact_id", "contacts", ondelete=None),
        org_fk("service_id", "services", ondelete=None),
        org_fk("resource_id", "resources", ondelete=None),
        # The pet must belong to the same contact (and organization).
        ForeignKeyConstraint(
            ["organization_id", "contact_id", "pet_id"],
            ["pets.organization_id", "pets.contact_id", "pets.id"],
            name="fk_pet_id_same_contact_pets",
        ),
        CheckConstraint(
            "status IN ('scheduled', 'confirmed', 'completed', 'cancelled', 'no_show')",
            name="status",
        ),
        CheckConstraint(
            "ends_at > starts_at AND ends_at - starts_at <= interval '24 hours'", name="span"
        ),
        CheckConstraint("price_cents >= 0", name="price_cents"),
        Index("ix_appointments_resource_start", "resource_id", "starts_at"),
        # Availability asks for appointments overlapping a window (starts_at < end AND
        # ends_at > start): by start alone that range runs back over the whole history,
        # by end it covers only what is still ahead (bounded by the booking horizon).
        Index("ix_appointments_resource_end", "resource_id", "ends_at"),
        Index("ix_appointments_org_start", "organization_id", "starts_at"),
        Index("ix_appointments_contact_start", "contact_id", "starts_at"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    contact_id: int = ref_field()
    pet_id: int | None = ref_field(nullable=True)
    service_id: int = ref_field()
    resource_id: int = ref_field()
    starts_at: datetime = moment_field(nullable=False)
    ends_at: datetime = moment_field(nullable=False)
    status: AppointmentStatus = Field(default="scheduled", sa_type=String(16))
    price_cents: int = Field(sa_type=BigInteger)
    source: AppointmentSource = Field(default="client_ai", sa_type=String(16))
    notes: str | None = Field(default=None, sa_type=Text)
    cancelled_at: datetime | None = moment_field()
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()
