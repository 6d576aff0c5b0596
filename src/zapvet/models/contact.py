"""Contacts (tutors), the WhatsApp identities that reach them, and their pets."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import (
    CheckConstraint,
    Index,
    String,
    Text,
    UniqueConstraint,
    column,
    func,
    text,
)
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

ContactStatus = Literal["active", "blocked"]
IdentityKind = Literal["phone", "lid", "bsuid"]


class Contact(SQLModel, table=True):
    """A person who writes to the business (a pet's tutor)."""

    __tablename__ = "contacts"
    __table_args__ = (
        org_unique("contacts"),
        CheckConstraint("status IN ('active', 'blocked')", name="status"),
        Index("ix_contacts_org_last_contact", "organization_id", "last_contact_at"),
        # The owner's summary counts opted-out clients: without it, a scan of every contact.
        Index(
            "ix_contacts_org_opted_out",
            "organization_id",
            postgresql_where=text("opted_out_at IS NOT NULL"),
        ),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    phone: str | None = Field(default=None, max_length=32)
    name: str | None = Field(default=None, max_length=200)
    status: ContactStatus = Field(default="active", sa_type=String(16))
    last_contact_at: datetime | None = moment_field()
    opted_out_at: datetime | None = moment_field()
    notes: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()


class ContactIdentity(SQLModel, table=True):
    """One way WhatsApp names a contact: a phone (canonical key), a LID or a Cloud API BSUID."""

    __tablename__ = "contact_identities"
    __table_args__ = (
        org_fk("contact_id", "contacts"),
        UniqueConstraint("organization_id", "kind", "value"),
        CheckConstraint("kind IN ('phone', 'lid', 'bsuid')", name="kind"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    contact_id: int = ref_field(index=True)
    kind: IdentityKind = Field(sa_type=String(8))
    value: str = Field(max_length=64)
    created_at: datetime = created_field()


class Pet(SQLModel, table=True):
    """An animal registered by its tutor."""

    __tablename__ = "pets"
    __table_args__ = (
        org_unique("pets"),
        org_fk("contact_id", "contacts"),
        # Lets appointments prove, by foreign key, that the pet belongs to the booked contact.
        UniqueConstraint("organization_id", "contact_id", "id", name="uq_pets_org_contact_id"),
        Index(
            "uq_pets_contact_name",
            "organization_id",
            "contact_id",
            func.lower(column("name")),
            unique=True,
        ),
        CheckConstraint("age_years IS NULL OR age_years BETWEEN 0 AND 40", name="age_years"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    contact_id: int = ref_field()
    name: str = Field(max_length=100)
    species: str = Field(max_length=50)
    breed: str | None = Field(default=None, max_length=100)
    age_years: int | None = Field(default=None)
    notes: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_field()
