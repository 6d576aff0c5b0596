"""Messages Aurora sends on her own: escalation alerts, 1-hour reminders, daily summaries
(and, from `proactive/budget.py`, the monthly AI budget's alerts).

Scheduling writes `aurora_proactive_messages` rows with a `dedupe_key`; the unique index on
it makes every scheduler idempotent (two schedulers at once insert each row once).
Sending claims due rows with `FOR UPDATE SKIP LOCKED`, so two senders never take the same
row, and re-checks each one right before it goes out: a reminder whose appointment was
cancelled or moved, whose client opted out, or that would land in quiet hours, is not sent.
The message pipeline calls these functions; nothing here talks to WhatsApp.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select as sa_select
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet import db
from zapvet.analytics.figures import business_summary
from zapvet.cleaning import clean_text
from zapvet.models import (
    UPCOMING_STATUSES,
    AISettings,
    Appointment,
    AuroraOwnerNumber,
    AuroraProactiveMessage,
    Contact,
    Organization,
    Pet,
    Service,
)
from zapvet.proactive.wording import (
    in_quiet_hours,
    reminder_text,
    reminder_values,
    summary_text,
    summary_values,
)

REMINDER, ALERT, DAILY = "appointment_reminder", "escalation_alert", "daily_summary"
BUDGET, TEMPLATE_ALERT = "budget_alert", "template_alert"
CONNECTION, WEBHOOK = "connection_alert", "webhook_alert"


async def insert_rows(session: AsyncSession, rows: list[dict[str, object]]) -> list[int]:
    """Insert rows, skipping any whose dedupe key exists; returns the new rows' ids."""
    if not rows:
        return []
    # Names and reasons in these texts were typed by customers or written by a model.
    rows = [{**row, "content": clean_text(str(row["content"]))} for row in rows]
    statement = (
        insert(AuroraProactiveMessage)
        .values(rows)
        .on_conflict_do_nothing(
            index_elements=["organization_id", "dedupe_key"],
            index_where=text("dedupe_key IS NOT NULL"),
        )
        .returning(col(AuroraProactiveMessage.id))
    )
    result = await session.exec(statement)
    return [row[0] for row in result.all()]


async def active_owners(session: AsyncSession, org_id: int) -> list[AuroraOwnerNumber]:
    rows = await session.exec(
        select(AuroraOwnerNumber).where(
            AuroraOwnerNumber.organization_id == org_id, col(AuroraOwnerNumber.is_active)
        )
    )
    return list(rows)


def reminder_key(appointment_id: int, starts_at: datetime) -> str:
    return f"reminder:{appointment_id}:{starts_at.astimezone(UTC):%Y%m%dT%H%M}"


@dataclass(frozen=True)
class _Due:
    appointment: Appointment
    org: Organization
    settings: AISettings | None
    contact: Contact
    service: str
    pet: str | None


async def schedule_reminders(session: AsyncSession, now: datetime) -> list[int]:
    """Queue the reminder of every appointment that starts within its organization's reminder
    lead (default 1 hour), for clients who did not opt out. Quiet hours push a reminder to
    the end of the window, or skip it when the appointment comes first."""
    rows = await db.rows(
        session,
        sa_select(Appointment, Organization, AISettings, Contact, col(Service.name), col(Pet.name))
        .join(Organization, col(Organization.id) == col(Appointment.organization_id))
        .outerjoin(AISettings, col(AISettings.organization_id) == col(Organization.id))
        .join(Contact, col(Contact.id) == col(Appointment.contact_id))
        .join(Service, col(Service.id) == col(Appointment.service_id))
        .outerjoin(Pet, col(Pet.id) == col(Appointment.pet_id))
        .where(
            col(Appointment.status).in_(UPCOMING_STATUSES),
            col(Appointment.starts_at) > now,
            col(Appointment.starts_at) <= now + timedelta(hours=24),
            col(Contact.opted_out_at).is_(None),
        ),
    )
    batch: list[dict[str, object]] = []
    for appointment, org, settings, contact, service, pet in rows:
        minutes = settings.reminder_minutes_before if settings else 60
        due = appointment.starts_at - timedelta(minutes=minutes)
        if due > now:
            continue
        zone = ZoneInfo(org.timezone)
        send_at, status = _respect_quiet_hours(now, appointment.starts_at, settings, zone)
        local = appointment.starts_at.astimezone(zone)
        batch.append(
            {
                "organization_id": org.id,
                "contact_id": contact.id,
                "appointment_id": appointment.id,
                "message_type": REMINDER,
                "content": reminder_text(org.name, contact.name, pet, service, local),
                "template_values": reminder_values(org.name, contact.name, pet, service, local),
                "scheduled_for": send_at,
                "status": status,
                "error": "quiet hours" if status == "skipped" else None,
                "dedupe_key": reminder_key(appointment.id or 0, appointment.starts_at),
            }
        )
    return await insert_rows(session, batch)


def _respect_quiet_hours(
    now: datetime, starts_at: datetime, settings: AISettings | None, zone: ZoneInfo
) -> tuple[datetime, str]:
    start = settings.quiet_hours_start if settings else None
    end = settings.quiet_hours_end if settings else None
    local = now.astimezone(zone)
    if not in_quiet_hours(local.time(), start, end):
        return now, "pending"
    assert end is not None
    window_end = datetime.combine(local.date(), end, tzinfo=zone)
    if window_end <= local:
        window_end += timedelta(days=1)
    if window_end.astimezone(UTC) < starts_at:
        return window_end.astimezone(UTC), "pending"
    return now, "skipped"


async def schedule_daily_summaries(session: AsyncSession, now: datetime) -> list[int]:
    """Queue today's summary for every owner of organizations whose summary time has come."""
    rows = await session.exec(
        select(Organization, AISettings)
        .join(AISettings, col(AISettings.organization_id) == col(Organization.id))
        .where(col(AISettings.daily_summary_at).is_not(None))
    )
    batch: list[dict[str, object]] = []
    for org, settings in rows:
        zone = ZoneInfo(org.timezone)
        local = now.astimezone(zone)
        assert settings.daily_summary_at is not None and org.id is not None
        if local.time() < settings.daily_summary_at:
            continue
        summary = await business_summary(session, org.id, zone, local.date(), local.date())
        content = summary_text(summary, local.date())
        values = summary_values(summary, local.date())
        batch += [
            {
                "organization_id": org.id,
                "owner_number_id": owner.id,
                "message_type": DAILY,
                "content": content,
                "template_values": values,
                "scheduled_for": now,
                "status": "pending",
                "dedupe_key": f"daily:{local.date().isoformat()}:{owner.id}",
            }
            for owner in await active_owners(session, org.id)
        ]
    return await insert_rows(session, batch)
