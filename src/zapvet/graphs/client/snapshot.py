"""Everything a client turn's prompt needs, read from the database once at the start of a turn."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

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


async def load_snapshot(
    session: AsyncSession,
    *,
    organization_id: int,
    contact_id: int,
    conversation_id: int,
    now: datetime,
    configs: ConfigCache,
) -> TurnSnapshot:
    """The turn's snapshot: three reads, with the organization's configuration from
    `configs` at the version the first read returns."""
    found = (
        await session.exec(
            select(Conversation.status, Contact.name, Organization.config_version)
            .join(Contact, col(Contact.id) == col(Conversation.contact_id))
            .join(Organization, col(Organization.id) == col(Conversation.organization_id))
            .where(
                Conversation.organization_id == organization_id,
                Conversation.id == conversation_id,
                Conversation.contact_id == contact_id,
            )
        )
    ).first()
    status, contact_name, version = found if found is not None else ("missing", None, None)
    try:
        config = await configs.get(session, organization_id, version)
    except UnknownOrganization as missing:
        raise ToolError("Organização não encontrada.") from missing
    org = policy_of(config)
    pets = await session.exec(
        select(Pet)
        .where(Pet.organization_id == organization_id, Pet.contact_id == contact_id)
        .order_by(col(Pet.name))
    )
    rows = await session.exec(
        select(Appointment, Service.name, Pet.name)
        .join(Service, col(Service.id) == col(Appointment.service_id))
        .outerjoin(Pet, col(Pet.id) == col(Appointment.pet_id))
        .where(
            Appointment.organization_id == organization_id,
            Appointment.contact_id == contact_id,
            col(Appointment.status).in_(UPCOMING_STATUSES),
            col(Appointment.starts_at) >= now,
        )
        .order_by(col(Appointment.starts_at))
        .limit(10)
    )
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
        pets=list(pets),
        upcoming=[
            UpcomingAppointment(
                id=appointment.id or 0,
                starts_at=appointment.starts_at,
                service=service_name,
                pet=pet_name,
                price_cents=appointment.price_cents,
            )
            for appointment, service_name, pet_name in rows
        ],
    )
