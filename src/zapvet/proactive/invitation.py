"""A care invitation: what it says (free starts as of now, nearest the pet's usual hour), and
whether it still goes out right before it does.

Planning (`proactive/care.py`) and sending (`proactive/delivery.py`) word an invitation with
the same function, `invitation_content`; at send time its free starts are computed anew, so
it never offers a slot taken since it was planned. An invitation that does not go out
releases its cycle's key (`release`), so the pet may be invited later in that cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.cleaning import clean_text
from zapvet.models import (
    UPCOMING_STATUSES,
    AISettings,
    Appointment,
    AuroraProactiveMessage,
    Contact,
    Conversation,
    Organization,
    Pet,
    Service,
)
from zapvet.proactive.wording import care_text, care_values, in_quiet_hours
from zapvet.scheduling.availability import Slot, local_moment, nearest_slots
from zapvet.scheduling.booking import OrgPolicy, day_slots, load_policy

CARE: Final = "care_invitation"
#: How many free starts an invitation offers (one per day), and how far ahead it looks.
OFFERED, LOOKAHEAD_DAYS = 3, 14


def care_key(pet_id: int, service_id: int, cycle_appointment_id: int) -> str:
    """One invitation per pet, service and cycle (the completed appointment it follows)."""
    return f"care:{pet_id}:{service_id}:{cycle_appointment_id}"


def in_care_window(settings: AISettings, local: datetime) -> bool:
    """Whether an invitation may leave at local time `local`: care on, one of its weekdays,
    inside its hours and outside the organization's quiet hours."""
    if not settings.care_enabled or not settings.care_weekdays >> local.weekday() & 1:
        return False
    if not settings.care_hours_start <= local.time() < settings.care_hours_end:
        return False
    return not in_quiet_hours(local.time(), settings.quiet_hours_start, settings.quiet_hours_end)


async def offer(
    session: AsyncSession, org: OrgPolicy, service: Service, now: datetime, prefer: time
) -> list[Slot]:
    """Up to `OFFERED` free starts for `service`, one per open day within `LOOKAHEAD_DAYS`,
    each the nearest to wall time `prefer` (the hour of the pet's last visit)."""
    chosen: list[Slot] = []
    today = now.astimezone(org.zone).date()
    for offset in range(LOOKAHEAD_DAYS + 1):
        day = today + timedelta(days=offset)
        slots = await day_slots(session, org, service, day, now)
        if slots:
            target = local_moment(day, prefer, org.zone) or slots[0].start
            chosen += nearest_slots(slots, target, 1)
        if len(chosen) == OFFERED:
            break
    return chosen


@dataclass(frozen=True)
class Invitation:
    org: OrgPolicy
    contact: Contact
    pet: Pet
    service: Service
    last_visit: datetime


async def invitation_content(
    session: AsyncSession, invitation: Invitation, now: datetime
) -> str | None:
    """The invitation's text with free starts as of `now`; None when none is free."""
    zone = invitation.org.zone
    last = invitation.last_visit.astimezone(zone)
    slots = await offer(session, invitation.org, invitation.service, now, last.time())
    if not slots:
        return None
    return care_text(
        invitation.org.name,
        invitation.contact.name,
        invitation.pet.name,
        invitation.service.name,
        last.date(),
        [slot.local(zone) for slot in slots],
    )


async def load_invitation(
    session: AsyncSession,
    org: OrgPolicy,
    contact_id: int,
    pet_id: int,
    service_id: int,
    last_visit: datetime,
) -> Invitation | None:
    contact = await session.get(Contact, contact_id)
    pet = await session.get(Pet, pet_id)
    service = await session.get(Service, service_id)
    if contact is None or pet is None or service is None:
        return None
    if {contact.organization_id, pet.organization_id, service.organization_id} != {
        org.organization_id
    }:
        return None
    return Invitation(org, contact, pet, service, last_visit)


async def recheck(
    session: AsyncSession, message: AuroraProactiveMessage, now: datetime
) -> str | None:
    """Why a claimed invitation must not go out after all (None: send it, with its slots
    computed again now and written into `message.content`)."""
    org_id = message.organization_id
    settings = await session.get(AISettings, org_id)
    org = await session.get(Organization, org_id)
    if settings is None or org is None or not settings.care_enabled:
        return "care invitations are off"
    if not in_care_window(settings, now.astimezone(ZoneInfo(org.timezone))):
        return "outside care hours"
    if message.contact_id is None or message.pet_id is None or message.service_id is None:
        return "incomplete invitation"
    contact = await session.get(Contact, message.contact_id)
    if contact is None or contact.status == "blocked":
        return "the client is blocked"
    escalated = (
        await session.exec(
            select(Conversation.id).where(
                Conversation.organization_id == org_id,
                Conversation.contact_id == message.contact_id,
                Conversation.status == "escalated",
            )
        )
    ).first()
    if escalated is not None:
        return "a person is handling the conversation"
    booked = (
        await session.exec(
            select(Appointment.id).where(
                Appointment.organization_id == org_id,
                Appointment.pet_id == message.pet_id,
                Appointment.service_id == message.service_id,
                col(Appointment.status).in_(UPCOMING_STATUSES),
                col(Appointment.starts_at) > now,
            )
        )
    ).first()
    if booked is not None:
        return "already booked"
    service = await session.get(Service, message.service_id)
    if service is None or not service.is_active:
        return "the service is no longer offered"
    content = await invitation_text(session, org_id, message.pet_id, message.service_id, now)
    if content is None:
        return "no free slot"
    message.content = clean_text(content)  # names typed by customers, as `insert_rows` does
    pet = await session.get(Pet, message.pet_id)
    # On a Cloud API number outside the 24-hour window, the invitation is its template.
    message.template_values = care_values(
        org.name, contact.name, pet.name if pet is not None else None, service.name
    )
    return None


async def invitation_text(
    session: AsyncSession, org_id: int, pet_id: int, service_id: int, now: datetime
) -> str | None:
    """The invitation the pet's tutor gets for the service as of `now` (its last completed
    visit, free slots now); None: no completed visit, or nothing free to offer."""
    last_visit = (
        await session.exec(
            select(Appointment.starts_at)
            .where(
                Appointment.organization_id == org_id,
                Appointment.pet_id == pet_id,
                Appointment.service_id == service_id,
                Appointment.status == "completed",
            )
            .order_by(col(Appointment.starts_at).desc())
        )
    ).first()
    pet = await session.get(Pet, pet_id)
    if last_visit is None or pet is None:
        return None
    policy = await load_policy(session, org_id)
    invitation = await load_invitation(
        session, policy, pet.contact_id, pet_id, service_id, last_visit
    )
    return await invitation_content(session, invitation, now) if invitation else None


def release(message: AuroraProactiveMessage) -> None:
    """An invitation that did not go out frees its cycle's key (kept in `error`)."""
    if message.message_type == CARE and message.dedupe_key is not None:
        message.error = f"{message.error} ({message.dedupe_key})"
        message.dedupe_key = None
