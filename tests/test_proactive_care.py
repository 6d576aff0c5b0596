"""Care cycles: which pets are due, the window and cap, idempotent planning, and the re-check
(fresh slots) right before an invitation goes out. Every clock here is frozen."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import SAO_PAULO
from zapvet import db
from zapvet.models import (
    AISettings,
    Appointment,
    AuroraProactiveMessage,
    Contact,
    Conversation,
    Organization,
    Pet,
    Resource,
    Service,
)
from zapvet.proactive.care import schedule_care_invitations
from zapvet.proactive.delivery import claim_by_id, finish, reason_not_to_send
from zapvet.proactive.invitation import CARE, care_key, in_care_window
from zapvet.proactive.wording import CARE_OPT_OUT

pytestmark = pytest.mark.anyio
#: Thursday 3 December 2026, 10:00 in São Paulo: inside the example's care window.
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=SAO_PAULO)
#: 21 days before: a banho then (the example's Banho returns after 21 days) is due today.
DUE_VISIT = datetime(2026, 11, 12, 9, 0, tzinfo=SAO_PAULO)
_counter = iter(range(10_000))


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.build_async_engine(database_url, pool_size=6)
    yield db.async_session_maker(engine)
    await engine.dispose()


def named(session: Session, model: type[Service] | type[Resource], name: str) -> int:
    row = session.exec(select(model).where(model.name == name)).one()
    assert row.id is not None
    return row.id


def tutor(
    session: Session, org: Organization, pet: str = "Rex", *, name: str = "Marina"
) -> tuple[Contact, Pet]:
    assert org.id is not None
    contact = Contact(organization_id=org.id, phone=f"55119777{next(_counter):05d}", name=name)
    session.add(contact)
    session.flush()
    animal = Pet(organization_id=org.id, contact_id=contact.id or 0, name=pet, species="cachorro")
    session.add(animal)
    session.commit()
    return contact, animal


def visit(
    session: Session,
    pet: Pet,
    start: datetime,
    status: str = "completed",
    *,
    service: str = "Banho",
    resource: str = "Carla",
) -> Appointment:
    chosen = session.get(Service, named(session, Service, service))
    assert chosen is not None
    row = Appointment(
        organization_id=pet.organization_id,
        contact_id=pet.contact_id,
        pet_id=pet.id,
        service_id=chosen.id or 0,
        resource_id=named(session, Resource, resource),
        starts_at=start,
        ends_at=start + timedelta(minutes=chosen.duration_minutes),
        status=status,  # type: ignore[arg-type]
        price_cents=chosen.price_cents,
        source="import",
    )
    session.add(row)
    session.commit()
    return row


def due_rex(session: Session, org: Organization, n: int = 0) -> tuple[Contact, Pet, Appointment]:
    """A tutor whose pet's banho was 21 days ago, at 09:00 plus `n` hours (one groomer)."""
    contact, rex = tutor(session, org)
    return contact, rex, visit(session, rex, DUE_VISIT + timedelta(hours=n))


async def plan(sessions: async_sessionmaker[AsyncSession], now: datetime = NOW) -> list[int]:
    async with sessions() as s, s.begin():
        return await schedule_care_invitations(s, now)


async def invitations(sessions: async_sessionmaker[AsyncSession]) -> list[AuroraProactiveMessage]:
    async with sessions() as s:
        return list(
            await s.exec(
                select(AuroraProactiveMessage)
                .where(AuroraProactiveMessage.message_type == CARE)
                .order_by(AuroraProactiveMessage.id)  # type: ignore[arg-type]
            )
        )


def set_care(session: Session, org: Organization, **values: object) -> None:
    row = session.get(AISettings, org.id)
    assert row is not None
    for name, value in values.items():
        setattr(row, name, value)
    session.commit()


OFFERED = re.compile(r"• \w[\w-]*(?:-feira)?, (\d\d/\d\d) às (\d\d:\d\d)")


async def test_a_pet_due_today_gets_one_invitation_naming_it_with_free_slots(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    contact, rex, last = due_rex(session, petfeliz)
    assert len(await plan(sessions)) == 1
    (row,) = await invitations(sessions)
    assert (row.contact_id, row.pet_id, row.status) == (contact.id, rex.id, "pending")
    assert row.service_id == named(session, Service, "Banho")
    assert row.dedupe_key == care_key(rex.id or 0, row.service_id or 0, last.id or 0)
    assert "Olá, Marina!" in row.content and "Banho de Rex" in row.content
    assert "12/11/2026" in row.content and row.content.endswith(CARE_OPT_OUT)
    assert CARE_OPT_OUT == "Responda PARAR para não receber mais lembretes."
    # One a day for three open days, each the nearest to the hour of the last visit (09:00):
    # today's is 11:00 (10:00 plus the 60-minute minimum lead).
    assert OFFERED.findall(row.content) == [("03/12", "11:00"), ("04/12", "09:00"),
                                            ("05/12", "09:00")]  # fmt: skip


async def test_a_pet_not_yet_due_gets_nothing_until_its_day(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, rex = tutor(session, petfeliz)
    visit(session, rex, DUE_VISIT + timedelta(days=1))  # due tomorrow, Friday
    visit(
        session,
        rex,
        DUE_VISIT - timedelta(days=60),
        service="Consulta Veterinária Geral",
        resource="Dra. Ana",
    )  # fmt: skip  (a service without a cycle: never due)
    assert await plan(sessions) == []
    assert len(await plan(sessions, NOW + timedelta(days=1))) == 1


async def test_the_latest_completed_visit_starts_the_cycle(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, rex, _ = due_rex(session, petfeliz)
    visit(session, rex, NOW - timedelta(days=5))  # bathed again since: due in 16 days
    visit(session, rex, NOW - timedelta(days=2), "no_show")  # missed ones start nothing
    assert await plan(sessions) == []


async def test_opted_out_blocked_and_escalated_tutors_are_not_invited(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    quiet, _, _ = due_rex(session, petfeliz)
    quiet.opted_out_at = NOW - timedelta(days=3)
    blocked, _, _ = due_rex(session, petfeliz, 1)
    blocked.status = "blocked"
    waiting, _, _ = due_rex(session, petfeliz, 2)  # a person is handling their conversation
    session.add(Conversation(organization_id=waiting.organization_id,
                             contact_id=waiting.id or 0, status="escalated"))  # fmt: skip
    session.commit()
    assert await plan(sessions) == []


async def test_a_pet_already_booked_for_the_service_is_not_invited(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, rex, _ = due_rex(session, petfeliz)
    visit(session, rex, NOW + timedelta(days=2), "scheduled")
    _, luna = tutor(session, petfeliz, "Luna")
    visit(session, luna, DUE_VISIT + timedelta(hours=1))
    visit(session, luna, NOW + timedelta(days=2), "cancelled")  # cancelled: still due
    assert len(await plan(sessions)) == 1
    (row,) = await invitations(sessions)
    assert row.pet_id == luna.id


async def test_cooldown_keeps_a_pet_from_a_second_invitation_about_the_service(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, rex, _ = due_rex(session, petfeliz)
    assert len(await plan(sessions)) == 1
    (first,) = await invitations(sessions)
    async with sessions() as s, s.begin():  # it went out
        row = await s.get(AuroraProactiveMessage, first.id)
        assert row is not None
        row.status, row.sent_at = "sent", NOW
    # The tutor came on the 5th without booking through us; the next cycle is due on the
    # 26th, inside the 30-day cooldown of the invitation sent on the 3rd.
    visit(session, rex, datetime(2026, 12, 5, 9, tzinfo=SAO_PAULO))
    due_again = datetime(2026, 12, 28, 10, tzinfo=SAO_PAULO)  # a Monday
    assert await plan(sessions, due_again) == []
    (again,) = await plan(sessions, NOW + timedelta(days=32))  # 04/01, cooled down
    async with sessions() as s, s.begin():
        row = await s.get(AuroraProactiveMessage, again)
        assert row is not None
        row.status, row.sent_at = "sent", NOW + timedelta(days=32)
    # Long past that cooldown too, the cycle's key keeps it to one invitation per cycle.
    assert await plan(sessions, datetime(2027, 3, 13, 10, tzinfo=SAO_PAULO)) == []


async def test_the_daily_cap_holds_and_the_rest_go_out_the_next_day(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    set_care(session, petfeliz, care_daily_cap=2)
    pets = [due_rex(session, petfeliz, n)[1] for n in range(3)]
    assert len(await plan(sessions)) == 2
    assert await plan(sessions, NOW + timedelta(hours=2)) == []
    assert len(await plan(sessions, NOW + timedelta(days=1))) == 1
    assert {row.pet_id for row in await invitations(sessions)} == {pet.id for pet in pets}


async def test_a_tutor_with_two_pets_due_gets_one_invitation_a_day(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    contact, rex, _ = due_rex(session, petfeliz)
    assert contact.id is not None
    luna = Pet(organization_id=rex.organization_id, contact_id=contact.id, name="Luna",
               species="gato")  # fmt: skip
    session.add(luna)
    session.commit()
    visit(session, luna, DUE_VISIT + timedelta(hours=2))
    assert len(await plan(sessions)) == 1
    assert await plan(sessions, NOW + timedelta(hours=3)) == []
    assert len(await plan(sessions, NOW + timedelta(days=1))) == 1


@pytest.mark.parametrize(
    ("moment", "why"),
    [
        (NOW.replace(hour=8, minute=59), "before care hours"),
        (NOW.replace(hour=18), "care hours end"),
        (datetime(2026, 12, 6, 10, tzinfo=SAO_PAULO), "Sunday is not a care weekday"),
    ],
)
async def test_nothing_is_planned_outside_the_care_window(
    session: Session,
    petfeliz: Organization,
    sessions: async_sessionmaker[AsyncSession],
    moment: datetime,
    why: str,
) -> None:
    due_rex(session, petfeliz)
    assert await plan(sessions, moment) == [], why


def test_the_window_respects_quiet_hours_weekdays_and_the_switch() -> None:
    row = AISettings(organization_id=1, care_enabled=True)
    thursday = NOW.replace(hour=13)
    assert in_care_window(row, thursday)
    row.quiet_hours_start, row.quiet_hours_end = time(12), time(14)
    assert not in_care_window(row, thursday)
    row.quiet_hours_start = row.quiet_hours_end = None
    row.care_weekdays = 0b1110111  # no Thursday
    assert not in_care_window(row, thursday)
    row.care_weekdays, row.care_enabled = 0b1111111, False
    assert not in_care_window(row, thursday)


async def test_care_off_plans_nothing(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    set_care(session, petfeliz, care_enabled=False)
    due_rex(session, petfeliz)
    assert await plan(sessions) == []


async def test_two_schedulers_racing_plan_each_invitation_once_within_the_cap(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    set_care(session, petfeliz, care_daily_cap=3)
    for n in range(5):
        due_rex(session, petfeliz, n)
    async with asyncio.timeout(60):  # a hang guard for the advisory lock
        created = await asyncio.gather(*(plan(sessions) for _ in range(4)))
    assert sum(len(ids) for ids in created) == 3
    rows = await invitations(sessions)
    assert len(rows) == 3 and len({row.dedupe_key for row in rows}) == 3
    assert await plan(sessions) == []  # a restart plans nothing new


async def test_a_crash_mid_batch_leaves_nothing_and_the_rerun_plans_each_once(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    for n in range(2):
        due_rex(session, petfeliz, n)
    async with sessions() as s:
        assert len(await schedule_care_invitations(s, NOW)) == 2
        await s.rollback()  # the process died before its commit
    assert await invitations(sessions) == []
    assert len(await plan(sessions)) == 2
    assert await plan(sessions) == []


async def stage(
    sessions: async_sessionmaker[AsyncSession], row_id: int, now: datetime
) -> tuple[str | None, AuroraProactiveMessage]:
    """What the proactive actor does before writing the outbox row: claim and re-check."""
    async with sessions() as s, s.begin():
        claimed = await claim_by_id(s, row_id, now)
        assert claimed is not None
        reason = await reason_not_to_send(s, claimed, now)
        if reason is not None:
            await finish(s, claimed, now, skipped=reason)
        return reason, claimed


async def test_slots_are_computed_again_when_the_invitation_goes_out(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    due_rex(session, petfeliz)
    (row_id,) = await plan(sessions)
    # Both groomers' Friday 09:00 is taken before the invitation leaves.
    _, other = tutor(session, petfeliz, "Thor")
    friday_nine = datetime(2026, 12, 4, 9, tzinfo=SAO_PAULO)
    for groomer in ("Carla", "Marcos"):
        visit(session, other, friday_nine, "scheduled", resource=groomer)
    reason, sent = await stage(sessions, row_id, NOW + timedelta(minutes=1))
    assert reason is None
    friday = [slot for slot in OFFERED.findall(sent.content) if slot[0] == "04/12"]
    assert friday and friday != [("04/12", "09:00")]
    assert sent.content.endswith(CARE_OPT_OUT)


async def test_an_invitation_booked_or_opted_out_before_it_leaves_is_not_sent(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    contact, rex, last = due_rex(session, petfeliz)
    quiet, _, _ = due_rex(session, petfeliz, 1)
    booked_id, quiet_id = await plan(sessions)
    visit(session, rex, NOW + timedelta(days=1), "scheduled")
    quiet.opted_out_at = NOW
    session.commit()
    assert (await stage(sessions, booked_id, NOW))[0] == "already booked"
    assert (await stage(sessions, quiet_id, NOW))[0] == "the client opted out"
    cancelled = {row.id: row for row in await invitations(sessions)}
    assert {row.status for row in cancelled.values()} == {"cancelled"}
    key = care_key(rex.id or 0, last.service_id, last.id or 0)
    assert cancelled[booked_id].dedupe_key is None and key in (cancelled[booked_id].error or "")


async def test_an_invitation_whose_tutor_was_escalated_or_blocked_meanwhile_is_not_sent(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    waiting, _, _ = due_rex(session, petfeliz)
    blocked, _, _ = due_rex(session, petfeliz, 1)
    waiting_id, blocked_id = await plan(sessions)
    session.add(Conversation(organization_id=waiting.organization_id,
                             contact_id=waiting.id or 0, status="escalated"))  # fmt: skip
    blocked.status = "blocked"
    session.commit()
    assert (await stage(sessions, waiting_id, NOW))[0] == "a person is handling the conversation"
    assert (await stage(sessions, blocked_id, NOW))[0] == "the client is blocked"


async def test_an_invitation_claimed_outside_the_window_is_not_sent_and_can_be_planned_again(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    due_rex(session, petfeliz)
    (row_id,) = await plan(sessions, NOW.replace(hour=17, minute=59))
    reason, _ = await stage(sessions, row_id, NOW.replace(hour=18, minute=1))
    assert reason == "outside care hours"
    assert len(await plan(sessions, NOW + timedelta(days=1))) == 1  # same cycle, not sent yet
