"""Booking against the database: the queries that feed the availability engine, and writes.

Every function takes the organization id explicitly and filters by it. Booking re-reads
availability inside its own transaction and then lets the capacity trigger have the last
word: a concurrent booking that wins the race turns into `SlotTakenError`, never into a
double booking.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exc as sa_exc
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.errors import SlotTakenError, ToolError
from zapvet.models import (
    OCCUPYING_STATUSES,
    Appointment,
    BusinessHours,
    Closure,
    Organization,
    Pet,
    Resource,
    ResourceService,
    Service,
)
from zapvet.models.appointment import AppointmentSource
from zapvet.models.config import OrgConfig
from zapvet.scheduling.availability import (
    Policy,
    ResourceLoad,
    Slot,
    bookable_window,
    free_slots,
    nearest_slots,
)
from zapvet.scheduling.catalogue import fold, match_services
from zapvet.webhooks.events import emit

WEEKDAY_NAMES = (
    "segunda-feira",
    "terça-feira",
    "quarta-feira",
    "quinta-feira",
    "sexta-feira",
    "sábado",
    "domingo",
)
EXCLUSION_VIOLATION = "23P01"
SERIALIZATION_FAILURE = "40001"


@dataclass(frozen=True)
class OrgPolicy:
    """An organization's name and booking rules, loaded once per turn."""

    organization_id: int
    name: str
    policy: Policy

    @property
    def zone(self) -> ZoneInfo:
        return self.policy.timezone


async def load_policy(session: AsyncSession, organization_id: int) -> OrgPolicy:
    org = await session.get(Organization, organization_id)
    if org is None:
        raise ToolError("Organização não encontrada.")
    hours = await session.exec(
        select(BusinessHours).where(BusinessHours.organization_id == organization_id)
    )
    closures = await session.exec(select(Closure).where(Closure.organization_id == organization_id))
    return _org_policy(org, list(hours), list(closures))


def policy_of(config: OrgConfig) -> OrgPolicy:
    """The booking rules of a cached configuration (no query)."""
    return _org_policy(config.organization, config.hours, config.closures)


def _org_policy(
    org: Organization, hours: Sequence[BusinessHours], closures: Sequence[Closure]
) -> OrgPolicy:
    weekly: dict[int, list[tuple[time, time]]] = {}
    for row in hours:
        weekly.setdefault(row.weekday, []).append((row.opens_at, row.closes_at))
    return OrgPolicy(
        organization_id=org.id or 0,
        name=org.name,
        policy=Policy(
            timezone=ZoneInfo(org.timezone),
            weekly_hours={day: sorted(items) for day, items in weekly.items()},
            closures=frozenset(closure.date for closure in closures),
            slot_minutes=org.slot_minutes,
            min_lead_minutes=org.min_lead_minutes,
            horizon_days=org.booking_horizon_days,
        ),
    )


async def active_services(session: AsyncSession, organization_id: int) -> list[Service]:
    rows = await session.exec(
        select(Service)
        .where(Service.organization_id == organization_id, col(Service.is_active))
        .order_by(col(Service.category), col(Service.name))
    )
    return list(rows)


async def resolve_service(session: AsyncSession, organization_id: int, query: str) -> Service:
    """The one active service `query` names.

    Raises:
        ToolError: no service or several match (the message lists the options).
    """
    services = await active_services(session, organization_id)
    found = match_services(services, query)
    if len(found) == 1:
        return found[0]
    names = ", ".join(s.name for s in (found or services))
    if not found:
        raise ToolError(f"Não oferecemos '{query}'. Serviços disponíveis: {names}.")
    raise ToolError(f"'{query}' pode ser: {names}. Pergunte ao cliente qual deles.")


async def find_pet(
    session: AsyncSession, organization_id: int, contact_id: int, name: str
) -> Pet | None:
    """The contact's pet called `name`, whatever its case and accents ("onix" is "Ônix").

    The one rule for pet names, for the customer and the owner alike. Compared in Python:
    SQL lower() leaves "Ô" alone under the C locale, and PostgreSQL has no unaccent here.
    """
    wanted = fold(name)
    rows = await session.exec(
        select(Pet)
        .where(Pet.organization_id == organization_id, Pet.contact_id == contact_id)
        .order_by(col(Pet.id))
    )
    return next((pet for pet in rows if fold(pet.name) == wanted), None)


async def resource_loads(
    session: AsyncSession,
    organization_id: int,
    service_id: int,
    window: tuple[datetime, datetime],
    *,
    exclude_appointment_id: int | None = None,
) -> list[ResourceLoad]:
    """Active resources performing `service_id`, with their occupied intervals in `window`."""
    resources = list(
        await session.exec(
            select(Resource)
            .join(ResourceService, col(ResourceService.resource_id) == col(Resource.id))
            .where(
                Resource.organization_id == organization_id,
                col(Resource.is_active),
                ResourceService.service_id == service_id,
            )
            .order_by(col(Resource.id))
        )
    )
    if not resources:
        return []
    start, end = window
    query = select(Appointment.resource_id, Appointment.starts_at, Appointment.ends_at).where(
        Appointment.organization_id == organization_id,
        col(Appointment.resource_id).in_([r.id for r in resources]),
        col(Appointment.status).in_(OCCUPYING_STATUSES),
        col(Appointment.starts_at) < end,
        col(Appointment.ends_at) > start,
    )
    if exclude_appointment_id is not None:
        query = query.where(Appointment.id != exclude_appointment_id)
    busy: dict[int, list[tuple[datetime, datetime]]] = {}
    for resource_id, starts_at, ends_at in await session.exec(query):
        busy.setdefault(resource_id, []).append((starts_at, ends_at))
    return [
        ResourceLoad(resource_id=r.id, capacity=r.capacity, busy=tuple(busy.get(r.id, ())))
        for r in resources
        if r.id is not None
    ]


def day_window(org: OrgPolicy, day: date) -> tuple[datetime, datetime]:
    """UTC bounds generous enough for every appointment touching local `day`."""
    start = datetime.combine(day, time(0), tzinfo=org.zone).astimezone(UTC)
    return start - timedelta(days=1), start + timedelta(days=2)


async def day_slots(
    session: AsyncSession,
    org: OrgPolicy,
    service: Service,
    day: date,
    now: datetime,
    *,
    exclude_appointment_id: int | None = None,
) -> list[Slot]:
    assert service.id is not None
    loads = await resource_loads(
        session,
        org.organization_id,
        service.id,
        day_window(org, day),
        exclude_appointment_id=exclude_appointment_id,
    )
    return free_slots(org.policy, day, service.duration_minutes, loads, now)


async def next_free_days(
    session: AsyncSession,
    org: OrgPolicy,
    service: Service,
    after: date,
    now: datetime,
    *,
    count: int = 3,
    exclude_appointment_id: int | None = None,
) -> list[tuple[date, list[Slot]]]:
    """Up to `count` days after `after` (and not before today), within the horizon, that still
    have free slots. Bounded by the horizon whatever `after` is."""
    _, last_day = bookable_window(org.policy, now)
    found: list[tuple[date, list[Slot]]] = []
    day = max(after + timedelta(days=1), now.astimezone(org.zone).date())
    while day <= last_day and len(found) < count:
        slots = await day_slots(
            session, org, service, day, now, exclude_appointment_id=exclude_appointment_id
        )
        if slots:
            found.append((day, slots))
        day += timedelta(days=1)
    return found


def describe_day(day: date) -> str:
    return f"{WEEKDAY_NAMES[day.weekday()]}, {day:%d/%m/%Y}"


async def alternatives(
    session: AsyncSession,
    org: OrgPolicy,
    service: Service,
    target: datetime,
    now: datetime,
    *,
    exclude_appointment_id: int | None = None,
) -> list[str]:
    """The free starts nearest to `target`: same day first, else the next open days."""
    day = target.astimezone(org.zone).date()
    slots = await day_slots(
        session, org, service, day, now, exclude_appointment_id=exclude_appointment_id
    )
    chosen = nearest_slots(slots, target)
    if not chosen:
        later = await next_free_days(
            session, org, service, day, now, count=2, exclude_appointment_id=exclude_appointment_id
        )
        chosen = [slots[0] for _, slots in later]
    return [describe_moment(s.local(org.zone)) for s in chosen]


def describe_moment(local: datetime) -> str:
    """ "quinta-feira, 26/11/2026 às 10:00" for a local datetime."""
    return f"{describe_day(local.date())} às {local:%H:%M}"


#: Dates a model may name: anything else is a typo or an attack, and would overflow the
#: calendar arithmetic (9999-12-31 plus a day) instead of being refused.
FIRST_YEAR, LAST_YEAR = 1900, 2100
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{1,2}:\d{2}(:\d{2})?")


def parse_local(org: OrgPolicy, day_text: str, time_text: str | None = None) -> datetime:
    """A local date (and time) typed by the model as YYYY-MM-DD and HH:MM, as an aware instant.

    Raises:
        ToolError: malformed or nonexistent.
    """
    try:
        if not _DATE.fullmatch(day_text.strip()):
            raise ValueError(day_text)
        day = date.fromisoformat(day_text.strip())
    except ValueError:
        raise ToolError(f"Data inválida '{day_text[:40]}': use o formato AAAA-MM-DD.") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise ToolError(
            f"Data fora do intervalo: {day:%d/%m/%Y}. "
            f"Use uma data entre {FIRST_YEAR} e {LAST_YEAR}."
        )
    wall = time(0)
    if time_text is not None:
        try:
            if not _TIME.fullmatch(time_text.strip()):
                raise ValueError(time_text)
            wall = time.fromisoformat(time_text.strip().zfill(5))
        except ValueError:
            raise ToolError(
                f"Horário inválido '{time_text[:40]}': use o formato HH:MM (00:00 a 23:59)."
            ) from None
    return datetime.combine(day, wall, tzinfo=org.zone)


def _is_capacity_error(error: sa_exc.DBAPIError) -> bool:
    code = getattr(error.orig, "sqlstate", None)
    return code in {EXCLUSION_VIOLATION, SERIALIZATION_FAILURE}


async def place(
    session: AsyncSession,
    appointment: Appointment,
    resource_ids: Sequence[int],
    *,
    span: tuple[datetime, datetime] | None = None,
) -> Appointment:
    """Put `appointment` (moved to `span`, if given) on the first resource the database accepts.

    Raises:
        SlotTakenError: every resource was taken by a concurrent booking (alternatives empty;
            the caller fills them in).
    """
    for resource_id in resource_ids:
        try:
            async with session.begin_nested():
                # Changed only inside the savepoint: begin_nested() first flushes pending
                # changes, and a move the trigger refuses outside it aborts the transaction.
                if span is not None:
                    appointment.starts_at, appointment.ends_at = span
                appointment.resource_id = resource_id
                session.add(appointment)
                await session.flush()
            return appointment
        except sa_exc.DBAPIError as error:
            if not _is_capacity_error(error):
                raise
    raise SlotTakenError("Esse horário acabou de ser ocupado.", [])


async def book(
    session: AsyncSession,
    org: OrgPolicy,
    *,
    contact_id: int,
    pet_id: int | None,
    service: Service,
    start: datetime,
    now: datetime,
    source: AppointmentSource,
) -> Appointment:
    """Book `service` at `start` for the contact's pet, if that start is free right now.

    Idempotent: the same pet, service and start already booked returns that appointment.

    Raises:
        SlotTakenError: not offered (closed, too soon, full) or lost to a concurrent booking.
    """
    assert service.id is not None
    existing = (
        await session.exec(
            select(Appointment).where(
                Appointment.organization_id == org.organization_id,
                Appointment.contact_id == contact_id,
                Appointment.pet_id == pet_id,
                Appointment.service_id == service.id,
                Appointment.starts_at == start,
                col(Appointment.status).in_(OCCUPYING_STATUSES),
            )
        )
    ).first()
    if existing is not None:
        return existing
    day = start.astimezone(org.zone).date()
    offered = {s.start: s for s in await day_slots(session, org, service, day, now)}
    slot = offered.get(start.astimezone(UTC))
    if slot is None:
        raise SlotTakenError(
            f"Esse horário ({describe_moment(start.astimezone(org.zone))}) não está disponível.",
            await alternatives(session, org, service, start, now),
        )
    appointment = Appointment(
        organization_id=org.organization_id,
        contact_id=contact_id,
        pet_id=pet_id,
        service_id=service.id,
        resource_id=slot.resource_ids[0],
        starts_at=slot.start,
        ends_at=slot.end,
        price_cents=service.price_cents,
        source=source,
        # The turn's clock (the wall clock in production), so that "booked within N days of
        # a care invitation" reads one clock under a frozen one too.
        created_at=now,
    )
    try:
        booked = await place(session, appointment, slot.resource_ids)
    except SlotTakenError as taken:
        when = describe_moment(start.astimezone(org.zone))
        raise SlotTakenError(
            f"Esse horário acabou de ser ocupado ({when}).",
            await alternatives(session, org, service, start, now),
        ) from taken
    await emit(
        await session.connection(),
        "appointment.created",
        organization_id=org.organization_id,
        about=booked.id or 0,
        now=now,
    )
    return booked


async def move(
    session: AsyncSession,
    org: OrgPolicy,
    appointment: Appointment,
    service: Service,
    start: datetime,
    now: datetime,
) -> Appointment:
    """Move `appointment` to `start`, preferring its current resource.

    Raises:
        SlotTakenError: the new start is not free (or was just taken).
    """
    assert appointment.id is not None
    if appointment.starts_at == start.astimezone(UTC):
        return appointment
    day = start.astimezone(org.zone).date()
    slots = await day_slots(session, org, service, day, now, exclude_appointment_id=appointment.id)
    slot = {s.start: s for s in slots}.get(start.astimezone(UTC))
    if slot is None:
        raise SlotTakenError(
            f"Esse horário ({describe_moment(start.astimezone(org.zone))}) não está disponível.",
            await alternatives(
                session, org, service, start, now, exclude_appointment_id=appointment.id
            ),
        )
    order = sorted(slot.resource_ids, key=lambda rid: rid != appointment.resource_id)
    previous = {
        "starts_at": _utc_text(appointment.starts_at),
        "ends_at": _utc_text(appointment.ends_at),
        "resource_id": appointment.resource_id,
    }
    try:
        moved = await place(session, appointment, order, span=(slot.start, slot.end))
    except SlotTakenError as taken:
        when = describe_moment(start.astimezone(org.zone))
        raise SlotTakenError(
            f"Esse horário acabou de ser ocupado ({when}).",
            await alternatives(
                session, org, service, start, now, exclude_appointment_id=appointment.id
            ),
        ) from taken
    await emit(
        await session.connection(),
        "appointment.rescheduled",
        organization_id=org.organization_id,
        about=appointment.id,
        now=now,
        extra={"previous": previous},
    )
    return moved


async def cancel(session: AsyncSession, appointment: Appointment, now: datetime) -> None:
    """Cancel `appointment` (a row locked by the caller) at `now`, for the customer and the
    owner alike."""
    appointment.status, appointment.cancelled_at = "cancelled", now
    session.add(appointment)
    await session.flush()
    await emit(
        await session.connection(),
        "appointment.cancelled",
        organization_id=appointment.organization_id,
        about=appointment.id or 0,
        now=now,
    )


def _utc_text(moment: datetime) -> str:
    """An instant as the webhooks' data writes it: "2026-11-26T13:00:00Z"."""
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
