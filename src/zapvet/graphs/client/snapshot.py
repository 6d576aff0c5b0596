"""Everything a client turn's prompt needs, read from the database once at the start of a turn."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.models import (
    UPCOMING_STATUSES,
    AISettings,
    Appointment,
    Contact,
    Conversation,
    Pet,
    Service,
)
from zapvet.scheduling.booking import OrgPolicy, active_services, load_policy


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
) -> TurnSnapshot:
    org = await load_policy(session, organization_id)
    ai = await session.get(AISettings, organization_id)
    conversation = (
        await session.exec(
            select(Conversation).where(
                Conversation.organization_id == organization_id,
                Conversation.id == conversation_id,
                Conversation.contact_id == contact_id,
            )
        )
    ).first()
    contact = (
        await session.exec(
            select(Contact).where(
                Contact.organization_id == organization_id, Contact.id == contact_id
            )
        )
    ).first()
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
    return TurnSnapshot(
        org=org,
        personality=ai.personality if ai else "",
        model=ai.model if ai else None,
        temperature=ai.temperature if ai else 0.3,
        services=await active_services(session, organization_id),
        closures=sorted(day for day in org.policy.closures if day >= today),
        conversation_status=conversation.status if conversation else "missing",
        contact_name=contact.name if contact else None,
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
