"""Sending Aurora's own messages: claim the due rows, re-check each one, record the outcome."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.models import (
    UPCOMING_STATUSES,
    AISettings,
    Appointment,
    AuroraProactiveMessage,
    Contact,
    Organization,
)
from zapvet.proactive import invitation
from zapvet.proactive.planning import REMINDER, reminder_key
from zapvet.proactive.wording import in_quiet_hours


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
    """Why a claimed message must not go out after all (None: send it). A care invitation's
    free slots are computed here, at send time, into its content (`invitation.recheck`)."""
    if message.contact_id is not None and message.owner_number_id is None:
        contact = await session.get(Contact, message.contact_id)
        if contact is None or contact.opted_out_at is not None:
            return "the client opted out"
    if message.message_type == invitation.CARE:
        return await invitation.recheck(session, message, now)
    if message.message_type != REMINDER or message.appointment_id is None:
        return None
    appointment = await session.get(Appointment, message.appointment_id)
    if appointment is None or appointment.status not in UPCOMING_STATUSES:
        return "the appointment is no longer active"
    if message.dedupe_key != reminder_key(appointment.id or 0, appointment.starts_at):
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
        invitation.release(message)
    elif error is not None:
        message.status, message.error = "failed", error
    else:
        message.status, message.sent_at = "sent", now
    session.add(message)
    await session.flush()
