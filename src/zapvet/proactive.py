"""Messages Aurora sends on her own: escalation alerts, 1-hour reminders, daily summaries.

Scheduling writes `aurora_proactive_messages` rows with a `dedupe_key`; the unique index on
it makes every scheduler idempotent (two schedulers at once insert each row once).
Sending claims due rows with `FOR UPDATE SKIP LOCKED`, so two senders never take the same
row, and re-checks each one right before it goes out: a reminder whose appointment was
cancelled or moved, whose client opted out, or that would land in quiet hours, is not sent.
The message pipeline calls these functions; nothing here talks to WhatsApp.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select as sa_select
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet import db
from zapvet.cleaning import clean_text
from zapvet.models import (
    UPCOMING_STATUSES,
    AISettings,
    Appointment,
    AuroraOwnerNumber,
    AuroraProactiveMessage,
    Contact,
    Conversation,
    Organization,
    Pet,
    Service,
)
from zapvet.money import format_brl
from zapvet.tools.analytics import Summary, business_summary
from zapvet.tools.booking import describe_day

REMINDER, ALERT, DAILY = "appointment_reminder", "escalation_alert", "daily_summary"


def in_quiet_hours(moment: time, start: time | None, end: time | None) -> bool:
    """Whether local `moment` falls in [start, end), a window that may wrap midnight."""
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def reminder_text(
    org: str, client: str | None, pet: str | None, service: str, local: datetime
) -> str:
    hello = f"Olá, {client}! " if client else "Olá! "
    whom = f" do {pet}" if pet else ""
    return (
        f"{hello}🐾 Lembrete: {service}{whom} hoje às {local:%H:%M} na {org}. "
        "Se precisar remarcar ou cancelar, é só responder aqui. "
        'Para não receber mais lembretes, responda "parar".'
    )


def alert_text(client: str | None, phone: str | None, reason: str | None) -> str:
    who = client or phone or "um cliente"
    contact = f" ({phone})" if client and phone else ""
    return (
        f"⚠️ Atendimento humano pedido: {who}{contact}.\n"
        f"Motivo: {reason or 'não informado'}.\n"
        "O robô parou de responder nessa conversa. Quando terminar, peça para eu devolvê-la."
    )


def summary_text(summary: Summary, day: date) -> str:
    """The owner's end-of-day message, every figure straight from `summary`."""
    lines = [f"📊 Resumo de {describe_day(day)}:", f"Clientes atendidos: {summary.clients_served}"]
    lines += [f"- {item.name}: {item.count}" for item in summary.per_service]
    lines += [
        f"Faturamento: {format_brl(summary.revenue_cents)}",
        f"Média por cliente: {format_brl(summary.average_ticket_cents)}",
        f"Faltas: {summary.no_shows} · Cancelamentos: {summary.cancellations}",
        f"Clientes que pediram para não receber mensagens: {summary.opted_out_clients}",
    ]
    return "\n".join(lines)


async def _insert(session: AsyncSession, rows: list[dict[str, object]]) -> list[int]:
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


async def _owners(session: AsyncSession, org_id: int) -> list[AuroraOwnerNumber]:
    rows = await session.exec(
        select(AuroraOwnerNumber).where(
            AuroraOwnerNumber.organization_id == org_id, col(AuroraOwnerNumber.is_active)
        )
    )
    return list(rows)


async def escalate(
    session: AsyncSession, conversation: Conversation, reason: str, now: datetime
) -> list[int]:
    """Hand `conversation` (a row locked by the caller) to a person and queue the owners'
    alerts in the caller's transaction, so no failure can separate the two; the alerts' ids.

    Escalating an escalated conversation again keeps its time, so the alerts are not repeated.
    """
    if conversation.status != "escalated" or conversation.escalated_at is None:
        conversation.escalated_at = now
    conversation.status = "escalated"
    conversation.escalation_reason = clean_text(reason, limit=1000) or "sem motivo informado"
    await session.flush()
    return await alert_escalation(session, conversation.organization_id, conversation.id or 0, now)


async def alert_escalation(
    session: AsyncSession, org_id: int, conversation_id: int, now: datetime
) -> list[int]:
    """Queue an alert to every active owner number about an escalated conversation."""
    row = (
        await session.exec(
            select(Conversation, Contact)
            .join(Contact, col(Contact.id) == col(Conversation.contact_id))
            .where(Conversation.organization_id == org_id, Conversation.id == conversation_id)
        )
    ).first()
    if row is None:
        return []
    conversation, contact = row
    stamp = (conversation.escalated_at or now).isoformat()
    content = alert_text(contact.name, contact.phone, conversation.escalation_reason)
    return await _insert(
        session,
        [
            {
                "organization_id": org_id,
                "owner_number_id": owner.id,
                "contact_id": contact.id,
                "message_type": ALERT,
                "content": content,
                "scheduled_for": now,
                "status": "pending",
                "dedupe_key": f"escalation:{conversation_id}:{stamp}:{owner.id}",
            }
            for owner in await _owners(session, org_id)
        ],
    )


def _reminder_key(appointment_id: int, starts_at: datetime) -> str:
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
                "scheduled_for": send_at,
                "status": status,
                "error": "quiet hours" if status == "skipped" else None,
                "dedupe_key": _reminder_key(appointment.id or 0, appointment.starts_at),
            }
        )
    return await _insert(session, batch)


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
        batch += [
            {
                "organization_id": org.id,
                "owner_number_id": owner.id,
                "message_type": DAILY,
                "content": content,
                "scheduled_for": now,
                "status": "pending",
                "dedupe_key": f"daily:{local.date().isoformat()}:{owner.id}",
            }
            for owner in await _owners(session, org.id)
        ]
    return await _insert(session, batch)


async def claim_due(
    session: AsyncSession, now: datetime, limit: int = 50
) -> list[AuroraProactiveMessage]:
    """Take up to `limit` due pending messages for sending (status `sending`).

    Rows another transaction holds are skipped, so concurrent senders split the work.
    """
    rows = list(
        await session.exec(
            select(AuroraProactiveMessage)
            .where(
                AuroraProactiveMessage.status == "pending",
                col(AuroraProactiveMessage.scheduled_for) <= now,
            )
            .order_by(col(AuroraProactiveMessage.scheduled_for), col(AuroraProactiveMessage.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for row in rows:
        row.status = "sending"
    await session.flush()
    return rows


async def due_ids(session: AsyncSession, now: datetime, limit: int = 200) -> list[int]:
    """Ids of pending messages whose time has come (not claimed: each send job claims its own)."""
    rows = await session.exec(
        select(AuroraProactiveMessage.id)
        .where(
            AuroraProactiveMessage.status == "pending",
            col(AuroraProactiveMessage.scheduled_for) <= now,
        )
        .order_by(col(AuroraProactiveMessage.scheduled_for))
        .limit(limit)
    )
    return [row for row in rows if row is not None]


async def claim_by_id(
    session: AsyncSession, proactive_id: int, now: datetime
) -> AuroraProactiveMessage | None:
    """Claim one due pending message for sending; None if it is gone, not due or taken."""
    row = (
        await session.exec(
            select(AuroraProactiveMessage)
            .where(
                AuroraProactiveMessage.id == proactive_id,
                AuroraProactiveMessage.status == "pending",
                col(AuroraProactiveMessage.scheduled_for) <= now,
            )
            .with_for_update(skip_locked=True)
        )
    ).first()
    if row is not None:
        row.status = "sending"
    return row


async def reason_not_to_send(
    session: AsyncSession, message: AuroraProactiveMessage, now: datetime
) -> str | None:
    """Why a claimed message must not go out after all (None: send it)."""
    if message.contact_id is not None and message.owner_number_id is None:
        contact = await session.get(Contact, message.contact_id)
        if contact is None or contact.opted_out_at is not None:
            return "the client opted out"
    if message.message_type != REMINDER or message.appointment_id is None:
        return None
    appointment = await session.get(Appointment, message.appointment_id)
    if appointment is None or appointment.status not in UPCOMING_STATUSES:
        return "the appointment is no longer active"
    if message.dedupe_key != _reminder_key(appointment.id or 0, appointment.starts_at):
        return "the appointment was moved"
    if appointment.starts_at <= now:
        return "the appointment already started"
    settings = await session.get(AISettings, message.organization_id)
    org = await session.get(Organization, message.organization_id)
    if settings and org:
        local = now.astimezone(ZoneInfo(org.timezone)).time()
        if in_quiet_hours(local, settings.quiet_hours_start, settings.quiet_hours_end):
            return "quiet hours"
    return None


async def finish(
    session: AsyncSession,
    message: AuroraProactiveMessage,
    now: datetime,
    *,
    error: str | None = None,
    skipped: str | None = None,
) -> None:
    """Record a claimed message as sent, skipped (with the reason) or failed."""
    if skipped is not None:
        message.status, message.error = "cancelled", skipped
    elif error is not None:
        message.status, message.error = "failed", error
    else:
        message.status, message.sent_at = "sent", now
    session.add(message)
    await session.flush()
