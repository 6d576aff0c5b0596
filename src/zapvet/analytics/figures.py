"""The owner's figures, computed by SQL over one organization's rows, never by the model.

Periods are inclusive ranges of local dates in the organization's timezone. "Served" means
an appointment marked completed; revenue is the sum of their agreed prices (integer cents);
the average ticket is revenue per client served, rounded half up to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, and_, case, distinct, func
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet import db
from zapvet.models import Appointment, Contact, Pet, Resource, Service
from zapvet.models.whatsapp import AuroraOwnerNumber


@dataclass(frozen=True)
class ServiceFigures:
    name: str
    category: str
    count: int
    revenue_cents: int


@dataclass(frozen=True)
class Summary:
    start: date
    end: date
    clients_served: int
    completed: int
    revenue_cents: int
    average_ticket_cents: int
    no_shows: int
    cancellations: int
    still_scheduled: int
    opted_out_clients: int
    per_service: list[ServiceFigures]

    def per_category(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.per_service:
            counts[item.category] = counts.get(item.category, 0) + item.count
        return counts


def period(zone: ZoneInfo, start: date, end: date) -> tuple[datetime, datetime]:
    """UTC bounds [start 00:00 local, day after end 00:00 local)."""
    return (
        datetime.combine(start, time(0), tzinfo=zone).astimezone(UTC),
        datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC),
    )


def average_cents(total: int, count: int) -> int:
    """`total / count` rounded half up, in integer arithmetic (0 when count is 0)."""
    return (2 * total + count) // (2 * count) if count else 0


def _in(org_id: int, bounds: tuple[datetime, datetime]) -> list[ColumnElement[bool]]:
    return [
        col(Appointment.organization_id) == org_id,
        col(Appointment.starts_at) >= bounds[0],
        col(Appointment.starts_at) < bounds[1],
    ]


async def business_summary(
    session: AsyncSession, org_id: int, zone: ZoneInfo, start: date, end: date
) -> Summary:
    bounds = period(zone, start, end)
    status = col(Appointment.status)
    done = status == "completed"
    (totals,) = await db.rows(
        session,
        sa_select(
            func.count(distinct(case((done, col(Appointment.contact_id))))),
            func.count().filter(done),
            func.coalesce(func.sum(col(Appointment.price_cents)).filter(done), 0),
            func.count().filter(status == "no_show"),
            func.count().filter(status == "cancelled"),
            func.count().filter(status.in_(("scheduled", "confirmed"))),
        ).where(*_in(org_id, bounds)),
    )
    per_service = await db.rows(
        session,
        sa_select(
            col(Service.name),
            col(Service.category),
            func.count(),
            func.coalesce(func.sum(col(Appointment.price_cents)), 0).cast(Integer),
        )
        # Scoped by organization so the planner reads this organization's few services, not
        # a hash of every organization's catalogue (bench/scale.py, organizations curve).
        .join(
            Service,
            and_(
                col(Service.id) == col(Appointment.service_id),
                col(Service.organization_id) == org_id,
            ),
        )
        .where(*_in(org_id, bounds), done)
        .group_by(col(Service.name), col(Service.category))
        .order_by(func.count().desc(), col(Service.name)),
    )
    opted_out = (
        await session.exec(
            select(func.count()).where(
                Contact.organization_id == org_id, col(Contact.opted_out_at).is_not(None)
            )
        )
    ).one()
    clients, completed, revenue, no_shows, cancellations, scheduled = totals
    return Summary(
        start=start,
        end=end,
        clients_served=clients,
        completed=completed,
        revenue_cents=int(revenue),
        average_ticket_cents=average_cents(int(revenue), clients),
        no_shows=no_shows,
        cancellations=cancellations,
        still_scheduled=scheduled,
        opted_out_clients=opted_out,
        per_service=[ServiceFigures(n, c, k, int(r)) for n, c, k, r in per_service],
    )


@dataclass(frozen=True)
class DayAppointment:
    id: int
    starts_at: datetime
    client: str
    phone: str | None
    pet: str | None
    service: str
    resource: str
    status: str
    price_cents: int


async def day_appointments(
    session: AsyncSession, org_id: int, zone: ZoneInfo, day: date
) -> list[DayAppointment]:
    found = await db.rows(
        session,
        sa_select(
            Appointment,
            col(Contact.name),
            col(Contact.phone),
            col(Pet.name),
            col(Service.name),
            col(Resource.name),
        )
        .join(Contact, col(Contact.id) == col(Appointment.contact_id))
        .join(Service, col(Service.id) == col(Appointment.service_id))
        .join(Resource, col(Resource.id) == col(Appointment.resource_id))
        .outerjoin(Pet, col(Pet.id) == col(Appointment.pet_id))
        .where(*_in(org_id, period(zone, day, day)))
        .order_by(col(Appointment.starts_at), col(Appointment.id)),
    )
    return [
        DayAppointment(
            id=a.id or 0,
            starts_at=a.starts_at,
            client=client or phone or f"cliente #{a.contact_id}",
            phone=phone,
            pet=pet,
            service=service,
            resource=resource,
            status=a.status,
            price_cents=a.price_cents,
        )
        for a, client, phone, pet, service, resource in found
    ]


@dataclass(frozen=True)
class ClientRow:
    id: int
    name: str | None
    phone: str | None
    pets: list[str]
    last_visit: datetime | None = None


async def _pets_of(session: AsyncSession, org_id: int, ids: list[int]) -> dict[int, list[str]]:
    pets: dict[int, list[str]] = {}
    if ids:
        rows = await session.exec(
            select(Pet.contact_id, Pet.name)
            .where(Pet.organization_id == org_id, col(Pet.contact_id).in_(ids))
            .order_by(col(Pet.name))
        )
        for contact_id, name in rows:
            pets.setdefault(contact_id, []).append(name)
    return pets


def _not_owner(org_id: int) -> ColumnElement[bool]:
    owner_phones = select(AuroraOwnerNumber.phone).where(
        AuroraOwnerNumber.organization_id == org_id
    )
    return col(Contact.phone).is_(None) | col(Contact.phone).not_in(owner_phones)


async def new_clients(
    session: AsyncSession, org_id: int, zone: ZoneInfo, start: date, end: date
) -> list[ClientRow]:
    bounds = period(zone, start, end)
    rows = list(
        await session.exec(
            select(Contact)
            .where(
                Contact.organization_id == org_id,
                col(Contact.created_at) >= bounds[0],
                col(Contact.created_at) < bounds[1],
                _not_owner(org_id),
            )
            .order_by(col(Contact.created_at))
        )
    )
    pets = await _pets_of(session, org_id, [c.id for c in rows if c.id])
    return [ClientRow(c.id or 0, c.name, c.phone, pets.get(c.id or 0, [])) for c in rows]


async def inactive_clients(
    session: AsyncSession, org_id: int, now: datetime, days: int
) -> list[ClientRow]:
    """Clients served before whose last completed visit is more than `days` ago, with nothing
    booked ahead, most overdue first."""
    last = func.max(col(Appointment.starts_at)).filter(col(Appointment.status) == "completed")
    upcoming = func.count().filter(
        and_(
            col(Appointment.status).in_(("scheduled", "confirmed")),
            col(Appointment.starts_at) >= now,
        )
    )
    found = await db.rows(
        session,
        sa_select(col(Contact.id), col(Contact.name), col(Contact.phone), last)
        .join(Appointment, col(Appointment.contact_id) == col(Contact.id))
        .where(col(Contact.organization_id) == org_id, col(Appointment.organization_id) == org_id)
        .group_by(col(Contact.id), col(Contact.name), col(Contact.phone))
        .having(last < now - timedelta(days=days), upcoming == 0)
        .order_by(last),
    )
    pets = await _pets_of(session, org_id, [row[0] for row in found if row[0]])
    return [
        ClientRow(id_ or 0, name, phone, pets.get(id_ or 0, []), last_visit)
        for id_, name, phone, last_visit in found
    ]


async def top_services(
    session: AsyncSession, org_id: int, zone: ZoneInfo, start: date, end: date, limit: int = 5
) -> list[ServiceFigures]:
    summary = await business_summary(session, org_id, zone, start, end)
    ranked = sorted(summary.per_service, key=lambda s: (-s.count, -s.revenue_cents, s.name))
    return ranked[:limit]
