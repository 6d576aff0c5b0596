"""Proactive messages: idempotent scheduling, exclusive claiming, and re-checks before sending."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import SAO_PAULO
from tests.fixtures_day import add, seed_day
from zapvet import db
from zapvet.models import (
    AISettings,
    Appointment,
    AuroraProactiveMessage,
    Contact,
    Conversation,
    Organization,
    Resource,
    Service,
)
from zapvet.proactive.delivery import claim_due, finish, reason_not_to_send
from zapvet.proactive.escalation import alert_escalation
from zapvet.proactive.planning import schedule_daily_summaries, schedule_reminders
from zapvet.proactive.wording import in_quiet_hours

pytestmark = pytest.mark.anyio
THURSDAY = datetime(2026, 11, 26, tzinfo=SAO_PAULO)


def at(hour: int, minute: int = 0) -> datetime:
    return THURSDAY.replace(hour=hour, minute=minute)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.build_async_engine(database_url, pool_size=5)
    yield db.async_session_maker(engine)
    await engine.dispose()


def banho(
    session: Session,
    org: Organization,
    start: datetime,
    phone: str = "5511977776666",
    *,
    service: str = "Banho",
    resource: str = "Carla",
) -> Appointment:
    chosen = session.exec(select(Service).where(Service.name == service)).one()
    who = session.exec(select(Resource).where(Resource.name == resource)).one()
    appointment = add(session, org, phone, "Marina", chosen, who, start, "scheduled")
    session.commit()
    return appointment


async def run(sessions: async_sessionmaker[AsyncSession], job: object) -> int:
    """Run a scheduling function in its own transaction; how many rows it created."""
    async with sessions() as s, s.begin():
        return len(await job(s))  # type: ignore[operator]


async def rows(sessions: async_sessionmaker[AsyncSession]) -> list[AuroraProactiveMessage]:
    async with sessions() as s:
        return list(
            await s.exec(select(AuroraProactiveMessage).order_by(AuroraProactiveMessage.id))
        )


async def test_reminder_is_scheduled_once_even_by_concurrent_schedulers(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    banho(session, petfeliz, at(10))
    assert await run(sessions, lambda s: schedule_reminders(s, at(8, 30))) == 0  # not due yet

    now = at(9, 5)
    counts = await asyncio.gather(
        *(run(sessions, lambda s: schedule_reminders(s, now)) for _ in range(4))
    )
    assert sum(counts) == 1
    assert await run(sessions, lambda s: schedule_reminders(s, now)) == 0
    (reminder,) = await rows(sessions)
    assert reminder.message_type == "appointment_reminder" and reminder.status == "pending"
    assert "hoje às 10:00" in reminder.content and "Banho" in reminder.content


async def test_concurrent_senders_never_claim_the_same_row(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    consulta = "Consulta Veterinária Geral"
    banho(session, petfeliz, at(10, 30), "5511977770001")
    banho(session, petfeliz, at(10, 30), "5511977770002", resource="Marcos")
    banho(session, petfeliz, at(10, 30), "5511977770003", service=consulta, resource="Dra. Ana")
    banho(session, petfeliz, at(11), "5511977770004", service=consulta, resource="Dra. Ana")
    assert await run(sessions, lambda s: schedule_reminders(s, at(10, 5))) == 4
    both_claimed = asyncio.Barrier(2)

    async def sender() -> list[int]:
        async with sessions() as s, s.begin():
            claimed = await claim_due(s, at(10, 5), limit=3)
            await both_claimed.wait()  # both transactions hold their claims at the same time
            return [m.id or 0 for m in claimed]

    async with asyncio.timeout(60):  # a hang guard: a claim must not wait for the other's rows
        claimed_a, claimed_b = await asyncio.gather(sender(), sender())
    assert not set(claimed_a) & set(claimed_b)
    assert len(claimed_a) + len(claimed_b) == 4
    assert {m.status for m in await rows(sessions)} == {"sending"}


async def test_a_moved_appointment_gets_a_new_reminder_and_the_old_one_is_not_sent(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    appointment = banho(session, petfeliz, at(10))
    await run(sessions, lambda s: schedule_reminders(s, at(9, 5)))
    appointment.starts_at, appointment.ends_at = at(11), at(12)
    session.commit()

    async with sessions() as s, s.begin():
        (old,) = await claim_due(s, at(9, 6))
        assert await reason_not_to_send(s, old, at(9, 6)) == "the appointment was moved"
        await finish(s, old, at(9, 6), skipped="the appointment was moved")
    assert await run(sessions, lambda s: schedule_reminders(s, at(10, 5))) == 1
    old, new = await rows(sessions)
    assert old.status == "cancelled" and new.status == "pending" and "hoje às 11:00" in new.content


async def test_cancelled_appointments_and_opted_out_clients_get_no_reminder(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cancelled = banho(session, petfeliz, at(10))
    cancelled.status = "cancelled"
    quiet_client = banho(session, petfeliz, at(10), phone="5511966660000", resource="Marcos")
    contact = session.get(Contact, quiet_client.contact_id)
    assert contact is not None
    contact.opted_out_at = at(8)
    session.commit()
    assert await run(sessions, lambda s: schedule_reminders(s, at(9, 5))) == 0

    # Opting out after the reminder was queued still stops it.
    other = banho(
        session, petfeliz, at(10), "5511955550000", service="Vacina V10", resource="Dra. Ana"
    )
    await run(sessions, lambda s: schedule_reminders(s, at(9, 5)))
    later = session.get(Contact, other.contact_id)
    assert later is not None
    later.opted_out_at = at(9, 6)
    session.commit()
    async with sessions() as s, s.begin():
        (queued,) = await claim_due(s, at(9, 7))
        assert await reason_not_to_send(s, queued, at(9, 7)) == "the client opted out"


async def test_quiet_hours_delay_or_skip_reminders(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # The example shop is quiet from 21:00 to 08:00.
    banho(session, petfeliz, at(8, 30))  # due 07:30, inside: delayed to 08:00
    banho(session, petfeliz, at(8), "5511944440000", resource="Marcos")  # due 07:00: skipped
    await run(sessions, lambda s: schedule_reminders(s, at(7, 35)))
    delayed, skipped = sorted(await rows(sessions), key=lambda m: m.status)
    assert delayed.status == "pending" and delayed.scheduled_for == at(8)
    assert skipped.status == "skipped" and skipped.error == "quiet hours"
    async with sessions() as s, s.begin():
        assert await claim_due(s, at(7, 40)) == []  # nothing is sent inside the window
        assert [m.id for m in await claim_due(s, at(8, 0))] == [delayed.id]


async def test_daily_summary_once_per_owner_after_its_time(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    seed_day(session, petfeliz)
    evening = datetime(2026, 11, 25, 19, 5, tzinfo=SAO_PAULO)
    assert (
        await run(sessions, lambda s: schedule_daily_summaries(s, evening - timedelta(hours=1)))
        == 0
    )
    assert await run(sessions, lambda s: schedule_daily_summaries(s, evening)) == 1
    assert await run(sessions, lambda s: schedule_daily_summaries(s, evening)) == 0
    (summary,) = await rows(sessions)
    assert summary.owner_number_id is not None and summary.message_type == "daily_summary"
    assert "Clientes atendidos: 12" in summary.content
    assert (
        "Faturamento: R$ 850,00" in summary.content
        and "Média por cliente: R$ 70,83" in summary.content
    )


async def test_escalation_alerts_every_active_owner_once(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    appointment = banho(session, petfeliz, at(10))
    assert petfeliz.id is not None
    conversation = Conversation(
        organization_id=petfeliz.id,
        contact_id=appointment.contact_id,
        status="escalated",
        escalation_reason="cachorro vomitando sangue",
        escalated_at=at(9),
    )
    session.add(conversation)
    session.commit()
    assert conversation.id is not None
    now = at(9, 1)
    assert (
        await run(
            sessions, lambda s: alert_escalation(s, petfeliz.id or 0, conversation.id or 0, now)
        )
        == 1
    )
    assert (
        await run(
            sessions, lambda s: alert_escalation(s, petfeliz.id or 0, conversation.id or 0, now)
        )
        == 0
    )
    (alert,) = await rows(sessions)
    assert "Marina" in alert.content and "cachorro vomitando sangue" in alert.content


@pytest.mark.parametrize(
    ("moment", "quiet"),
    [(time(22), True), (time(3), True), (time(8), False), (time(12), False), (time(21), True)],
)
def test_quiet_hours_window_wraps_midnight(moment: time, quiet: bool) -> None:
    assert in_quiet_hours(moment, time(21), time(8)) is quiet
    assert in_quiet_hours(moment, None, None) is False


def test_settings_reminder_lead_is_used(session: Session, petfeliz: Organization) -> None:
    settings = session.get(AISettings, petfeliz.id)
    assert settings is not None and settings.reminder_minutes_before == 60
