"""Booking on real PostgreSQL: book, move, service resolution, lost races and properties."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session, col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import NOW, SAO_PAULO
from zapvet import db
from zapvet.errors import SlotTakenError, ToolError
from zapvet.models import (
    Appointment,
    Contact,
    Organization,
    Pet,
    Resource,
    ResourceService,
    Service,
)
from zapvet.scheduling import booking
from zapvet.scheduling.availability import Slot
from zapvet.tools.deps import ToolDeps

Sessions = async_sessionmaker[AsyncSession]

TODAY = NOW.date()  # Wednesday 25/11/2026, 14:00
THURSDAY = date(2026, 11, 26)
FRIDAY = date(2026, 11, 27)
SATURDAY = date(2026, 11, 28)
SUNDAY = date(2026, 11, 29)
TEN = "quinta-feira, 26/11/2026 às 10:00"
CONSULTA = "Consulta Veterinária Geral"
SERVICES = [
    "Banho",
    "Tosa Completa",
    "Tosa Higiênica",
    CONSULTA,
    "Vacina V10",
    "Vacina Antirrábica",
]
OCCUPYING = ("scheduled", "confirmed", "completed")

# examples/petfeliz.toml, restated so the reference model below does not trust the code.
HOURS = {
    **dict.fromkeys(range(5), [(time(8), time(12)), (time(13), time(18))]),
    5: [(time(8), time(13))],
}
CLOSURES = {date(2026, 12, 25), date(2027, 1, 1)}
LEAD = timedelta(minutes=60)
LAST_DAY = TODAY + timedelta(days=60)
GRID = timedelta(minutes=30)

#: Every (resource, start of an occupying appointment) where the load exceeds capacity. Load
#: only rises at a start, so checking every start checks every instant.
OVERBOOKED = text(
    """
    SELECT r.name, a.starts_at, count(*) AS load, r.capacity
      FROM appointments a
      JOIN resources r ON r.id = a.resource_id
      JOIN appointments b ON b.resource_id = a.resource_id
                         AND b.starts_at <= a.starts_at AND b.ends_at > a.starts_at
     WHERE a.status IN ('scheduled', 'confirmed', 'completed')
       AND b.status IN ('scheduled', 'confirmed', 'completed')
     GROUP BY r.name, r.capacity, a.id, a.starts_at
    HAVING count(*) > r.capacity
    """
)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SAO_PAULO)


def not_offered(moment: str) -> str:
    return f"Esse horário ({moment}) não está disponível."


def just_taken(moment: str) -> str:
    return f"Esse horário acabou de ser ocupado ({moment})."


def wall(moment: datetime) -> str:
    return f"{moment.astimezone(SAO_PAULO):%H:%M}"


@dataclass(frozen=True)
class Tutor:
    contact_id: int
    pet_id: int


@dataclass(frozen=True)
class Shop:
    """The example organization with five tutors, as the tests address it."""

    organization_id: int
    tutors: tuple[Tutor, ...]
    services: dict[str, int]  # name → id
    durations: dict[str, int]  # name → minutes
    resources: dict[str, int]  # name → id
    performers: dict[str, tuple[int, ...]]  # service name → resource ids, preferred first


@pytest.fixture
def shop(session: Session, petfeliz: Organization) -> Shop:
    org_id = petfeliz.id
    assert org_id is not None
    tutors = []
    for index, name in enumerate(["Rex", "Mel", "Thor", "Luna", "Bidu"]):
        contact = Contact(organization_id=org_id, phone=f"55119990000{index}", name="Tutor")
        session.add(contact)
        session.flush()
        assert contact.id is not None
        pet = Pet(organization_id=org_id, contact_id=contact.id, name=name, species="cachorro")
        session.add(pet)
        session.flush()
        assert pet.id is not None
        tutors.append(Tutor(contact.id, pet.id))
    session.commit()
    services = list(session.exec(select(Service).where(Service.organization_id == org_id)))
    resources = list(session.exec(select(Resource).where(Resource.organization_id == org_id)))
    links = list(
        session.exec(select(ResourceService).where(ResourceService.organization_id == org_id))
    )
    by_id = {s.id: s.name for s in services}
    performers: dict[str, list[int]] = {}
    for link in links:
        performers.setdefault(by_id[link.service_id], []).append(link.resource_id)
    return Shop(
        organization_id=org_id,
        tutors=tuple(tutors),
        services={s.name: s.id for s in services if s.id is not None},
        durations={s.name: s.duration_minutes for s in services},
        resources={r.name: r.id for r in resources if r.id is not None},
        performers={name: tuple(sorted(ids)) for name, ids in performers.items()},
    )


@asynccontextmanager
async def tool_transaction(sessions: Sessions, *, keep: bool = True) -> AsyncIterator[AsyncSession]:
    """One transaction, as a tool call runs it; rolled back on error or when not `keep`."""
    async with sessions() as session:
        transaction = await session.begin()
        try:
            yield session
        except BaseException:
            await transaction.rollback()
            raise
        await (transaction.commit() if keep else transaction.rollback())


async def book_at(
    sessions: Sessions,
    shop: Shop,
    tutor: Tutor,
    service: str,
    start: datetime,
    *,
    keep: bool = True,
) -> Appointment:
    """What the booking tool does: one transaction, committed unless booking refuses."""
    async with tool_transaction(sessions, keep=keep) as session:
        org = await booking.load_policy(session, shop.organization_id)
        row = await session.get(Service, shop.services[service])
        assert row is not None
        appointment = await booking.book(
            session,
            org,
            contact_id=tutor.contact_id,
            pet_id=tutor.pet_id,
            service=row,
            start=start,
            now=NOW,
            source="client_ai",
        )
        session.expunge(appointment)  # readable after a rollback too
        return appointment


async def move_to(
    sessions: Sessions, shop: Shop, appointment_id: int, start: datetime, *, keep: bool = True
) -> dict[str, Any]:
    """What the rescheduling tool does; returns the moved row's fields as the tool reads them."""
    async with tool_transaction(sessions, keep=keep) as session:
        org = await booking.load_policy(session, shop.organization_id)
        appointment = await session.get(Appointment, appointment_id)
        assert appointment is not None
        service = await session.get(Service, appointment.service_id)
        assert service is not None
        moved = await booking.move(session, org, appointment, service, start, NOW)
        # Read every field inside the session, as the tool does when it describes the result.
        return {name: getattr(moved, name) for name in Appointment.model_fields}


async def offered(
    sessions: Sessions,
    shop: Shop,
    service: str,
    day: date,
    exclude_appointment_id: int | None = None,
) -> list[Slot]:
    async with sessions() as session, session.begin():
        org = await booking.load_policy(session, shop.organization_id)
        row = await session.get(Service, shop.services[service])
        assert row is not None
        return await booking.day_slots(
            session, org, row, day, NOW, exclude_appointment_id=exclude_appointment_id
        )


async def overbooked(sessions: Sessions) -> list[Any]:
    async with sessions() as session:
        connection = await session.connection()
        return list(await connection.execute(OVERBOOKED))


def count_rows(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Appointment)).one()


# -- book -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_book_takes_an_offered_slot(deps: ToolDeps, shop: Shop, session: Session) -> None:
    slots = await offered(deps.sessions, shop, CONSULTA, THURSDAY)
    assert "10:00" in [wall(s.start) for s in slots]

    booked = await book_at(deps.sessions, shop, shop.tutors[0], CONSULTA, local(THURSDAY, 10))

    assert booked.id is not None
    assert booked.starts_at == local(THURSDAY, 10)
    assert booked.ends_at - booked.starts_at == timedelta(minutes=30)
    assert booked.resource_id == shop.resources["Dra. Ana"]
    assert booked.price_cents == 12000
    assert booked.status == "scheduled"
    assert booked.pet_id == shop.tutors[0].pet_id
    after = await offered(deps.sessions, shop, CONSULTA, THURSDAY)
    assert [wall(s.start) for s in after] == [
        wall(s.start) for s in slots if wall(s.start) != "10:00"
    ]
    assert count_rows(session) == 1


@pytest.mark.anyio
async def test_book_is_idempotent_for_the_same_pet_service_and_start(
    deps: ToolDeps, shop: Shop, session: Session
) -> None:
    first = await book_at(deps.sessions, shop, shop.tutors[0], "Banho", local(THURSDAY, 9))
    again = await book_at(deps.sessions, shop, shop.tutors[0], "Banho", local(THURSDAY, 9))

    assert again.id == first.id
    assert count_rows(session) == 1
    # Another pet at the same time is a new booking (on the other groomer).
    other = await book_at(deps.sessions, shop, shop.tutors[1], "Banho", local(THURSDAY, 9))
    assert other.id != first.id
    assert {first.resource_id, other.resource_id} == {
        shop.resources["Carla"],
        shop.resources["Marcos"],
    }
    assert count_rows(session) == 2


@pytest.mark.anyio
async def test_book_refuses_a_taken_start_with_the_nearest_free_starts(
    deps: ToolDeps, shop: Shop, session: Session
) -> None:
    await book_at(deps.sessions, shop, shop.tutors[0], CONSULTA, local(THURSDAY, 10))

    with pytest.raises(SlotTakenError) as refused:
        await book_at(deps.sessions, shop, shop.tutors[1], CONSULTA, local(THURSDAY, 10))

    assert refused.value.message == not_offered("quinta-feira, 26/11/2026 às 10:00")
    assert refused.value.alternatives == [
        "quinta-feira, 26/11/2026 às 09:00",
        "quinta-feira, 26/11/2026 às 09:30",
        "quinta-feira, 26/11/2026 às 10:30",
    ]
    assert count_rows(session) == 1


@pytest.mark.anyio
async def test_book_refuses_starts_off_the_grid_too_soon_or_on_closed_days(
    deps: ToolDeps, shop: Shop, session: Session
) -> None:
    tutor = shop.tutors[0]
    with pytest.raises(SlotTakenError) as off_grid:
        await book_at(deps.sessions, shop, tutor, CONSULTA, local(THURSDAY, 10, 15))
    assert off_grid.value.message == not_offered("quinta-feira, 26/11/2026 às 10:15")
    assert off_grid.value.alternatives == [
        "quinta-feira, 26/11/2026 às 09:30",
        "quinta-feira, 26/11/2026 às 10:00",
        "quinta-feira, 26/11/2026 às 10:30",
    ]

    with pytest.raises(SlotTakenError) as too_soon:  # now is 14:00; the lead is 60 minutes
        await book_at(deps.sessions, shop, tutor, CONSULTA, local(TODAY, 14, 30))
    assert too_soon.value.alternatives == [
        "quarta-feira, 25/11/2026 às 15:00",
        "quarta-feira, 25/11/2026 às 15:30",
        "quarta-feira, 25/11/2026 às 16:00",
    ]

    with pytest.raises(SlotTakenError) as sunday:
        await book_at(deps.sessions, shop, tutor, "Banho", local(SUNDAY, 10))
    assert sunday.value.alternatives == [
        "segunda-feira, 30/11/2026 às 08:00",
        "terça-feira, 01/12/2026 às 08:00",
    ]

    with pytest.raises(SlotTakenError) as christmas:
        await book_at(deps.sessions, shop, tutor, "Banho", local(date(2026, 12, 25), 10))
    assert christmas.value.alternatives == [
        "sábado, 26/12/2026 às 08:00",
        "segunda-feira, 28/12/2026 às 08:00",
    ]

    with pytest.raises(SlotTakenError):  # a 90-minute Tosa at 11:00 would run into lunch
        await book_at(deps.sessions, shop, tutor, "Tosa Completa", local(THURSDAY, 11))
    assert count_rows(session) == 0


# -- move -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_move_moves_an_appointment_to_a_free_start(
    deps: ToolDeps, shop: Shop, session: Session
) -> None:
    booked = await book_at(deps.sessions, shop, shop.tutors[0], CONSULTA, local(THURSDAY, 10))
    assert booked.id is not None

    moved = await move_to(deps.sessions, shop, booked.id, local(FRIDAY, 15, 30))

    assert moved["id"] == booked.id
    assert moved["starts_at"] == local(FRIDAY, 15, 30)
    assert moved["ends_at"] == local(FRIDAY, 16)
    assert moved["status"] == "scheduled"
    assert "10:00" in [
        wall(s.start) for s in await offered(deps.sessions, shop, CONSULTA, THURSDAY)
    ]
    assert count_rows(session) == 1


@pytest.mark.anyio
async def test_move_within_its_own_time_does_not_collide_with_itself(
    deps: ToolDeps, shop: Shop
) -> None:
    booked = await book_at(deps.sessions, shop, shop.tutors[0], "Banho", local(THURSDAY, 9))
    await book_at(deps.sessions, shop, shop.tutors[1], "Banho", local(THURSDAY, 9))  # Marcos
    assert booked.id is not None

    moved = await move_to(deps.sessions, shop, booked.id, local(THURSDAY, 9, 30))

    assert moved["starts_at"] == local(THURSDAY, 9, 30)
    assert moved["resource_id"] == booked.resource_id


@pytest.mark.anyio
async def test_move_refuses_a_taken_start(deps: ToolDeps, shop: Shop, session: Session) -> None:
    first = await book_at(deps.sessions, shop, shop.tutors[0], CONSULTA, local(THURSDAY, 10))
    await book_at(deps.sessions, shop, shop.tutors[1], CONSULTA, local(THURSDAY, 11))
    assert first.id is not None

    with pytest.raises(SlotTakenError) as refused:
        await move_to(deps.sessions, shop, first.id, local(THURSDAY, 11))

    assert refused.value.message == not_offered("quinta-feira, 26/11/2026 às 11:00")
    # Its own 10:00 counts as free for its own move.
    assert refused.value.alternatives == [
        "quinta-feira, 26/11/2026 às 10:00",
        "quinta-feira, 26/11/2026 às 10:30",
        "quinta-feira, 26/11/2026 às 11:30",
    ]
    session.expire_all()
    still = session.get(Appointment, first.id)
    assert still is not None and still.starts_at == local(THURSDAY, 10)


@pytest.mark.anyio
async def test_move_takes_another_resource_when_its_own_is_busy(
    deps: ToolDeps, shop: Shop, session: Session
) -> None:
    early = await book_at(deps.sessions, shop, shop.tutors[0], "Banho", local(THURSDAY, 9))
    late = await book_at(deps.sessions, shop, shop.tutors[1], "Banho", local(THURSDAY, 14))
    assert early.id is not None
    assert early.resource_id == late.resource_id == shop.resources["Carla"]

    moved = await move_to(deps.sessions, shop, early.id, local(THURSDAY, 14))

    assert moved["starts_at"] == local(THURSDAY, 14)
    assert moved["resource_id"] == shop.resources["Marcos"]
    assert count_rows(session) == 2


# -- resolve_service ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_resolve_service_finds_the_one_service_a_phrase_names(
    deps: ToolDeps, shop: Shop
) -> None:
    async with deps.sessions() as session:
        found = await booking.resolve_service(session, shop.organization_id, "consulta geral")
        exact = await booking.resolve_service(session, shop.organization_id, "vacina v10")
    assert found.name == CONSULTA
    assert exact.name == "Vacina V10"


@pytest.mark.anyio
async def test_resolve_service_lists_both_vaccines_for_an_ambiguous_phrase(
    deps: ToolDeps, shop: Shop
) -> None:
    async with deps.sessions() as session:
        with pytest.raises(ToolError) as ambiguous:
            await booking.resolve_service(session, shop.organization_id, "vacinação")
    assert not isinstance(ambiguous.value, SlotTakenError)
    assert ambiguous.value.message == (
        "'vacinação' pode ser: Vacina Antirrábica, Vacina V10. Pergunte ao cliente qual deles."
    )


@pytest.mark.anyio
async def test_resolve_service_lists_the_catalogue_for_an_unknown_service(
    deps: ToolDeps, shop: Shop
) -> None:
    async with deps.sessions() as session:
        with pytest.raises(ToolError) as unknown:
            await booking.resolve_service(session, shop.organization_id, "hotel")
    message = unknown.value.message
    assert message.startswith("Não oferecemos 'hotel'. Serviços disponíveis: ")
    assert all(name in message for name in SERVICES)


# -- races ----------------------------------------------------------------------------------


async def attempt(
    sessions: Sessions, shop: Shop, tutor: Tutor, service: str, start: datetime
) -> Appointment | SlotTakenError:
    try:
        return await book_at(sessions, shop, tutor, service, start)
    except SlotTakenError as taken:
        return taken


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("service", "already", "capacity"),
    [(CONSULTA, 0, 1), ("Banho", 1, 2)],
    ids=["only-place", "second-groomer"],
)
async def test_book_race_for_the_last_place_has_one_winner(
    deps: ToolDeps,
    shop: Shop,
    session: Session,
    request: pytest.FixtureRequest,
    service: str,
    already: int,
    capacity: int,
) -> None:
    start = local(THURSDAY, 10)
    for tutor in shop.tutors[2 : 2 + already]:
        await book_at(deps.sessions, shop, tutor, service, start)

    outcomes = await asyncio.gather(
        attempt(deps.sessions, shop, shop.tutors[0], service, start),
        attempt(deps.sessions, shop, shop.tutors[1], service, start),
    )

    winners = [o for o in outcomes if isinstance(o, Appointment)]
    losers = [o for o in outcomes if isinstance(o, SlotTakenError)]
    assert len(winners) == 1 and len(losers) == 1
    # The loser either read availability after the winner committed, or read it before and was
    # stopped by the capacity trigger: both are a lost race. The test report says which.
    assert losers[0].message in {not_offered(TEN), just_taken(TEN)}
    path = "trigger" if losers[0].message == just_taken(TEN) else "read"
    request.node.user_properties.append(("race_path", path))
    assert losers[0].alternatives and TEN not in losers[0].alternatives
    assert count_rows(session) == capacity


@dataclass
class Gate:
    """Once armed, holds the next availability read until `release` is set."""

    armed: bool = False
    read: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
def stale_read(monkeypatch: pytest.MonkeyPatch) -> Gate:
    """Once the gate is armed, the next `day_slots` call reads, then waits for `gate.release`.

    Its caller then acts on availability read before a concurrent booking committed: the
    race the capacity trigger exists for, made deterministic.
    """
    gate = Gate()
    read = booking.day_slots

    async def day_slots(*args: Any, **kwargs: Any) -> list[Slot]:
        slots = await read(*args, **kwargs)
        if gate.armed and not gate.read.is_set():
            gate.read.set()
            await gate.release.wait()
        return slots

    monkeypatch.setattr(booking, "day_slots", day_slots)
    return gate


@pytest.mark.anyio
async def test_book_on_a_stale_read_is_stopped_by_the_trigger(
    deps: ToolDeps, shop: Shop, session: Session, stale_read: Gate
) -> None:
    start = local(THURSDAY, 10)
    stale_read.armed = True
    late = asyncio.create_task(attempt(deps.sessions, shop, shop.tutors[1], CONSULTA, start))
    await stale_read.read.wait()

    winner = await attempt(deps.sessions, shop, shop.tutors[0], CONSULTA, start)
    stale_read.release.set()
    lost = await late

    assert isinstance(winner, Appointment)
    assert isinstance(lost, SlotTakenError)
    assert lost.message == just_taken(TEN)
    assert lost.alternatives == [
        "quinta-feira, 26/11/2026 às 09:00",
        "quinta-feira, 26/11/2026 às 09:30",
        "quinta-feira, 26/11/2026 às 10:30",
    ]
    assert count_rows(session) == 1


@pytest.mark.anyio
async def test_book_on_a_stale_read_falls_back_to_the_next_free_resource(
    deps: ToolDeps, shop: Shop, session: Session, stale_read: Gate
) -> None:
    start = local(THURSDAY, 10)
    stale_read.armed = True
    late = asyncio.create_task(attempt(deps.sessions, shop, shop.tutors[1], "Banho", start))
    await stale_read.read.wait()  # it saw Carla and Marcos free, Carla first

    first = await attempt(deps.sessions, shop, shop.tutors[0], "Banho", start)
    stale_read.release.set()
    second = await late

    assert isinstance(first, Appointment) and isinstance(second, Appointment)
    assert first.resource_id == shop.resources["Carla"]
    assert second.resource_id == shop.resources["Marcos"]
    assert second.starts_at == start
    assert count_rows(session) == 2


@pytest.mark.anyio
async def test_move_on_a_stale_read_falls_back_to_the_next_free_resource(
    deps: ToolDeps, shop: Shop, session: Session, stale_read: Gate
) -> None:
    booked = await book_at(deps.sessions, shop, shop.tutors[0], "Banho", local(THURSDAY, 9))
    assert booked.id is not None and booked.resource_id == shop.resources["Carla"]
    start = local(THURSDAY, 14)
    stale_read.armed = True
    moving = asyncio.create_task(move_to(deps.sessions, shop, booked.id, start))
    await stale_read.read.wait()  # it saw Carla (its own groomer) and Marcos free at 14:00

    taken = await attempt(deps.sessions, shop, shop.tutors[1], "Banho", start)
    stale_read.release.set()
    moved = await moving

    assert isinstance(taken, Appointment) and taken.resource_id == shop.resources["Carla"]
    assert moved["starts_at"] == start and moved["ends_at"] == local(THURSDAY, 15)
    assert moved["resource_id"] == shop.resources["Marcos"]
    assert moved["status"] == "scheduled" and moved["price_cents"] == 5000
    session.expire_all()
    stored = session.get(Appointment, booked.id)
    assert stored is not None
    assert (stored.starts_at, stored.resource_id) == (start, shop.resources["Marcos"])
    assert count_rows(session) == 2


# -- properties against the database --------------------------------------------------------

WALLS = st.one_of(
    st.integers(16, 23).map(lambda n: time(*divmod(n * 30, 60))),  # 08:00 … 11:30, on the grid
    st.sampled_from([time(13), time(17), time(17, 30)]),  # long services cannot start late
    st.sampled_from([time(7, 30), time(10, 15), time(12), time(12, 45), time(18)]),  # off hours
)
# Mostly one busy Thursday, so bookings collide; the others bring Saturday hours, the lead
# time (today) and a closed day.
DAYS = st.sampled_from([THURSDAY, THURSDAY, THURSDAY, SATURDAY, TODAY, SUNDAY])
CAPACITIES = st.fixed_dictionaries(
    {"Carla": st.integers(1, 2), "Marcos": st.integers(1, 2), "Dra. Ana": st.integers(1, 2)}
)
#: A quarter of the profile's examples per property search (each example is a few dozen
#: transactions): 25 by default, 100 with `pytest --hypothesis-profile=thorough`.
EXAMPLES = settings.default.max_examples // 4
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@dataclass(frozen=True)
class Book:
    service: str
    tutor: int
    day: date
    at: time

    def start(self) -> datetime:
        return local(self.day, self.at.hour, self.at.minute)


@dataclass(frozen=True)
class Move:
    pick: int
    day: date
    at: time

    def start(self) -> datetime:
        return local(self.day, self.at.hour, self.at.minute)


@dataclass(frozen=True)
class SetStatus:
    pick: int
    status: Literal["cancelled", "confirmed"]


@dataclass(frozen=True)
class Again:
    """Book a service and start already booked (maybe since cancelled), by any tutor."""

    pick: int
    tutor: int


Operation = Book | Move | SetStatus | Again
NEWCOMER = 4  # the fifth tutor: never in generated operations
BOOKS = st.builds(Book, st.sampled_from(SERVICES), st.integers(0, NEWCOMER - 1), DAYS, WALLS)
# Prefixes that mostly succeed, busiest on Thursday.
PREFIX = st.lists(
    st.builds(
        Book,
        st.sampled_from(SERVICES),
        st.integers(0, NEWCOMER - 1),
        st.sampled_from([THURSDAY, THURSDAY, FRIDAY, SATURDAY]),
        st.integers(16, 35).map(lambda n: time(*divmod(n * 30, 60))),
    ),
    min_size=6,
    max_size=14,
)
OPERATIONS = st.sampled_from(["book", "book", "book", "again", "move", "status"]).flatmap(
    lambda kind: {
        "book": BOOKS,
        "again": st.builds(Again, st.integers(0, 99), st.integers(0, NEWCOMER - 1)),
        "move": st.builds(Move, st.integers(0, 99), DAYS, WALLS),
        "status": st.builds(
            SetStatus, st.integers(0, 99), st.sampled_from(["cancelled", "confirmed"])
        ),
    }[kind]
)


def within_hours(start: datetime, end: datetime) -> bool:
    """The booking rules of petfeliz.toml, restated: open, on the grid, after the lead time."""
    day = start.astimezone(SAO_PAULO).date()
    if start < NOW + LEAD or day in CLOSURES or day > LAST_DAY:
        return False
    for opens, closes in HOURS.get(day.weekday(), []):
        opening = datetime.combine(day, opens, tzinfo=SAO_PAULO)
        closing = datetime.combine(day, closes, tzinfo=SAO_PAULO)
        if opening <= start and end <= closing and (start - opening) % GRID == timedelta(0):
            return True
    return False


@dataclass
class Row:
    id: int
    tutor: int
    service: str
    resource_id: int
    start: datetime
    end: datetime
    status: str = "scheduled"


@dataclass
class Reference:
    """What the table should hold, with free places counted minute by minute."""

    shop: Shop
    capacity: dict[int, int]
    rows: list[Row] = field(default_factory=list)

    def occupying(self) -> list[Row]:
        return [row for row in self.rows if row.status in OCCUPYING]

    def free_resources(self, service: str, start: datetime, moving: Row | None = None) -> list[int]:
        end = start + timedelta(minutes=self.shop.durations[service])
        if not within_hours(start, end):
            return []
        others = [row for row in self.occupying() if row is not moving]
        free = []
        for resource_id in self.shop.performers[service]:
            mine = [row for row in others if row.resource_id == resource_id]
            ticks = range(int((end - start) / timedelta(minutes=1)))
            load = max(
                sum(1 for row in mine if row.start <= start + timedelta(minutes=i) < row.end)
                for i in ticks
            )
            if load < self.capacity[resource_id]:
                free.append(resource_id)
        return free

    def snapshot(self) -> set[tuple[int, int, datetime, datetime, str]]:
        return {(r.id, r.resource_id, r.start, r.end, r.status) for r in self.rows}


async def reset(sessions: Sessions, shop: Shop, capacities: dict[str, int]) -> dict[int, int]:
    """Empty the appointments table and set the resources' capacities for one example."""
    async with sessions() as session, session.begin():
        await session.exec(delete(Appointment))
        for name, capacity in capacities.items():
            resource_id = shop.resources[name]
            await session.exec(
                update(Resource).where(col(Resource.id) == resource_id).values(capacity=capacity)
            )
    return {shop.resources[name]: capacity for name, capacity in capacities.items()}


async def stored(sessions: Sessions) -> set[tuple[int, int, datetime, datetime, str]]:
    async with sessions() as session:
        rows = await session.exec(select(Appointment))
        return {(a.id or 0, a.resource_id, a.starts_at, a.ends_at, a.status) for a in rows}


def refusal(start: datetime) -> str:
    return not_offered(booking.describe_moment(start.astimezone(SAO_PAULO)))


async def apply(sessions: Sessions, reference: Reference, operation: Operation) -> None:
    """Apply `operation` the way the tools do, checking each outcome against `reference`."""
    shop = reference.shop
    if isinstance(operation, Again):
        if not reference.rows:
            return
        row = reference.rows[operation.pick % len(reference.rows)]
        moment = row.start.astimezone(SAO_PAULO)
        operation = Book(row.service, operation.tutor, moment.date(), moment.time())
    if isinstance(operation, Book):
        start = operation.start()
        key = (operation.tutor, operation.service, start)
        same = [r for r in reference.occupying() if (r.tutor, r.service, r.start) == key]
        free = reference.free_resources(operation.service, start)
        try:
            booked = await book_at(
                sessions, shop, shop.tutors[operation.tutor], operation.service, start
            )
        except SlotTakenError as refused:
            assert not same and not free, f"refused a free start: {refused.message}"
            # One writer at a time: refusals come from the read, never from the trigger.
            assert refused.message == refusal(start)
            event("book: refused")
            return
        assert booked.id is not None
        if same:
            assert booked.id == same[0].id
            event("book: already booked")
            return
        assert free, f"booked {start} although every resource was full"
        assert (booked.resource_id, booked.starts_at) == (free[0], start)
        reference.rows.append(
            Row(booked.id, operation.tutor, operation.service, free[0], start, booked.ends_at)
        )
        event(
            "book: booked"
            if len(free) == len(shop.performers[operation.service])
            else "book: booked on a partly full start"
        )
        return
    upcoming = [r for r in reference.rows if r.status in ("scheduled", "confirmed")]
    if not upcoming:
        return
    row = upcoming[operation.pick % len(upcoming)]
    if isinstance(operation, SetStatus):
        async with sessions() as session, session.begin():
            appointment = await session.get(Appointment, row.id)
            assert appointment is not None
            appointment.status = operation.status
        row.status = operation.status
        return
    start = operation.start()
    free = [row.resource_id] if start == row.start else []
    free = free or reference.free_resources(row.service, start, moving=row)
    try:
        moved = await move_to(sessions, shop, row.id, start)
    except SlotTakenError as refused:
        assert not free, f"refused a free start: {refused.message}"
        assert refused.message == refusal(start)
        event("move: refused")
        return
    assert free, f"moved to {start} although every resource was full"
    expected = row.resource_id if row.resource_id in free else free[0]
    assert (moved["resource_id"], moved["starts_at"]) == (expected, start)
    event("move: moved" if expected == row.resource_id else "move: moved to another resource")
    row.resource_id, row.start, row.end = expected, start, moved["ends_at"]


def run_example(database_url: str, body: Callable[[Sessions], Awaitable[None]]) -> None:
    """Run one Hypothesis example on an event loop and engine of its own."""

    async def main() -> None:
        engine = db.build_async_engine(database_url, pool_size=2)
        try:
            await body(db.async_session_maker(engine))
        finally:
            await engine.dispose()

    asyncio.run(main())


@pytest.mark.slow  # a property search, a database per example
@settings(PROPERTY, max_examples=2 * EXAMPLES)  # 50 by default, 200 when thorough
@given(capacities=CAPACITIES, operations=st.lists(OPERATIONS, min_size=3, max_size=15))
def test_book_never_overbooks_whatever_is_booked_moved_or_cancelled(
    database_url: str, shop: Shop, capacities: dict[str, int], operations: list[Operation]
) -> None:
    async def body(sessions: Sessions) -> None:
        reference = Reference(shop, await reset(sessions, shop, capacities))
        for operation in operations:
            await apply(sessions, reference, operation)
            assert await overbooked(sessions) == []
        assert await stored(sessions) == reference.snapshot()

    run_example(database_url, body)


@pytest.mark.slow  # a property search, a database per example
@PROPERTY
@given(capacities=CAPACITIES, prefix=PREFIX, data=st.data())
def test_day_slots_offers_only_starts_that_book_accepts(
    database_url: str,
    shop: Shop,
    capacities: dict[str, int],
    prefix: list[Book],
    data: st.DataObject,
) -> None:
    async def body(sessions: Sessions) -> None:
        await reset(sessions, shop, capacities)
        for step in prefix:
            with suppress(SlotTakenError):
                await book_at(sessions, shop, shop.tutors[step.tutor], step.service, step.start())
        service = data.draw(st.sampled_from(SERVICES), label="service")
        day = data.draw(st.sampled_from([THURSDAY, FRIDAY, SATURDAY, TODAY]), label="day")
        slots = await offered(sessions, shop, service, day)
        assume(slots)
        # Every offered start, each booked in a transaction rolled back afterwards, by a tutor
        # the prefix never used (so idempotency cannot answer instead of booking).
        for slot in slots:
            booked = await book_at(
                sessions, shop, shop.tutors[NEWCOMER], service, slot.start, keep=False
            )
            assert (booked.starts_at, booked.ends_at) == (slot.start, slot.end)
            assert booked.resource_id == slot.resource_ids[0]
        slot = data.draw(st.sampled_from(slots), label="slot")
        await book_at(sessions, shop, shop.tutors[NEWCOMER], service, slot.start)
        assert await overbooked(sessions) == []

    run_example(database_url, body)


@pytest.mark.slow  # a property search, a database per example
@PROPERTY
@given(capacities=CAPACITIES, prefix=PREFIX, data=st.data())
def test_day_slots_offers_only_starts_that_move_accepts(
    database_url: str,
    shop: Shop,
    capacities: dict[str, int],
    prefix: list[Book],
    data: st.DataObject,
) -> None:
    async def body(sessions: Sessions) -> None:
        await reset(sessions, shop, capacities)
        booked: dict[int, Appointment] = {}
        for step in prefix:
            with suppress(SlotTakenError):
                tutor = shop.tutors[step.tutor]
                row = await book_at(sessions, shop, tutor, step.service, step.start())
                assert row.id is not None
                booked[row.id] = row
        assume(booked)
        names = {id: name for name, id in shop.services.items()}
        appointment = data.draw(st.sampled_from(list(booked.values())), label="appointment")
        assert appointment.id is not None
        service = names[appointment.service_id]
        own_day = appointment.starts_at.astimezone(SAO_PAULO).date()
        day = data.draw(st.sampled_from([own_day, THURSDAY, FRIDAY, SATURDAY, TODAY]), label="day")
        slots = await offered(sessions, shop, service, day, appointment.id)
        assume(slots)
        for slot in slots:  # each move rolled back afterwards
            moved = await move_to(sessions, shop, appointment.id, slot.start, keep=False)
            assert (moved["starts_at"], moved["ends_at"]) == (slot.start, slot.end)
            assert moved["resource_id"] in slot.resource_ids
        # Starts only another resource can take are rare in random draws: try every such start
        # of every appointment's own day too.
        for other in booked.values():
            assert other.id is not None
            own = other.starts_at.astimezone(SAO_PAULO).date()
            for slot in await offered(sessions, shop, names[other.service_id], own, other.id):
                if other.resource_id in slot.resource_ids:
                    continue
                event("move: only another resource is free")
                moved = await move_to(sessions, shop, other.id, slot.start, keep=False)
                assert (moved["starts_at"], moved["resource_id"]) == (
                    slot.start,
                    slot.resource_ids[0],
                )
        slot = data.draw(st.sampled_from(slots), label="slot")
        await move_to(sessions, shop, appointment.id, slot.start)
        assert await overbooked(sessions) == []

    run_example(database_url, body)
