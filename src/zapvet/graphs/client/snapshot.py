"""Everything a client turn's prompt needs, read from the database once at the start of a turn."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, func
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import aliased
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet import db
from zapvet.errors import ToolError
from zapvet.models import (
    UPCOMING_STATUSES,
    Appointment,
    Contact,
    Conversation,
    Organization,
    Pet,
    Service,
)
from zapvet.models.config import ConfigCache, UnknownOrganization
from zapvet.scheduling.booking import OrgPolicy, policy_of


@dataclass(frozen=True)
class UpcomingAppointment:
    id: int
    starts_at: datetime
    service: str
    pet: str | None
    price_cents: int


@dataclass(frozen=True)
class TurnSnapshot:
    org: OrgPolicy
    personality: str
    model: str | None
    temperature: float
    services: list[Service]
    closures: list[date]
    conversation_status: str
    contact_name: str | None
    pets: list[Pet]
    upcoming: list[UpcomingAppointment]


@cache
def _snapshot_statement() -> Any:
    """One row per pet (one with no pet if there are none): the conversation's status, the
    contact's name, the configuration version, and the next ten appointments as JSON.
    Built once, with parameters (`organization_id`, `contact_id`, `conversation_id`, `now`):
    SQLAlchemy keeps a statement's cache key on the object."""
    organization_id: Any = bindparam("organization_id")
    contact_id: Any = bindparam("contact_id")
    conversation_id: Any = bindparam("conversation_id")
    now: Any = bindparam("now")
    booked_pet = aliased(Pet)
    upcoming = (
        sa_select(
            col(Appointment.id).label("id"),
            col(Appointment.starts_at).label("starts_at"),
            col(Service.name).label("service"),
            col(booked_pet.name).label("pet"),
            col(Appointment.price_cents).label("price_cents"),
        )
        .join(Service, col(Service.id) == col(Appointment.service_id))
        .outerjoin(booked_pet, col(booked_pet.id) == col(Appointment.pet_id))
        .where(
            col(Appointment.organization_id) == organization_id,
            col(Appointment.contact_id) == contact_id,
            col(Appointment.status).in_(UPCOMING_STATUSES),
            col(Appointment.starts_at) >= now,
        )
        .order_by(col(Appointment.starts_at))
        .limit(10)
        .subquery()
    )
    item = func.json_build_array(
        upcoming.c.id, upcoming.c.starts_at, upcoming.c.service, upcoming.c.pet,
        upcoming.c.price_cents,
    )  # fmt: skip
    agenda = sa_select(
        func.json_agg(aggregate_order_by(item, upcoming.c.starts_at))
    ).scalar_subquery()
    return (
        sa_select(
            col(Conversation.status),
            col(Contact.name),
            col(Organization.config_version),
            Pet,
            agenda,
        )  # fmt: skip
        .join(Contact, col(Contact.id) == col(Conversation.contact_id))
        .join(Organization, col(Organization.id) == col(Conversation.organization_id))
        .outerjoin(
            Pet,
            (col(Pet.organization_id) == organization_id) & (col(Pet.contact_id) == contact_id),
        )
        .where(
            col(Conversation.organization_id) == organization_id,
            col(Conversation.id) == conversation_id,
            col(Conversation.contact_id) == contact_id,
        )
        .order_by(col(Pet.name))
    )


async def load_snapshot(
    session: AsyncSession,
    *,
    organization_id: int,
    contact_id: int,
    conversation_id: int,
    now: datetime,
    configs: ConfigCache,
) -> TurnSnapshot:
    """The turn's snapshot: one read, with the organization's configuration from `configs`
    at the version that read returns."""
    keys = {
        "organization_id": organization_id,
        "contact_id": contact_id,
        "conversation_id": conversation_id,
        "now": now,
    }
    rows = await db.rows(session, _snapshot_statement(), keys)
    if rows:
        status, contact_name, version, _, agenda = rows[0]
    else:
        status, contact_name, version, agenda = "missing", None, None, None
    try:
        config = await configs.get(session, organization_id, version)
    except UnknownOrganization as missing:
        raise ToolError("Organização não encontrada.") from missing
    org = policy_of(config)
    pets = [row[3] for row in rows if row[3] is not None]
    today = now.astimezone(org.zone).date()
    ai = config.ai
    return TurnSnapshot(
        org=org,
        personality=ai.personality if ai else "",
        model=ai.model if ai else None,
        temperature=ai.temperature if ai else 0.3,
        services=list(config.services),
        closures=sorted(day for day in org.policy.closures if day >= today),
        conversation_status=status,
        contact_name=contact_name,
        pets=pets,
        upcoming=[
            UpcomingAppointment(
                id=int(appointment_id),
                starts_at=datetime.fromisoformat(starts_at),
                service=service_name,
                pet=pet_name,
                price_cents=int(price_cents),
            )
            for appointment_id, starts_at, service_name, pet_name, price_cents in agenda or []
        ],
    )
