"""Care cycles: invite a pet's tutor back when a recurring service is due again.

A pet is due for a service with `return_after_days` when its last completed appointment of
that service plus the interval (in local days) has come, nothing of that service is booked
after it, its tutor is active, has not opted out and is not waiting for a person (an
escalated conversation), it was not invited about that service within `[care]
cooldown_days` (pending, sending or sent invitations count), and the tutor got no other
invitation today. Planning runs only inside `[care] hours` and `weekdays` (and outside
`[aurora] quiet_hours`), takes a transaction advisory lock per organization so that two
schedulers count the daily cap one after the other, and writes `aurora_proactive_messages`
rows whose `dedupe_key` is `care:<pet>:<service>:<appointment that started the cycle>`: a
restart, a second scheduler or a crash mid-batch inserts each invitation once.

Right before an invitation goes out (`recheck`) everything is checked again and its free
slots are computed anew, so it never offers a slot taken since it was planned. An
invitation that does not go out releases its key (`release`): the pet may be invited later
in the same cycle, and one that went out never is again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import text
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
from zapvet.proactive.planning import insert_rows
from zapvet.proactive.wording import care_text, in_quiet_hours
from zapvet.scheduling.availability import Slot, local_moment, nearest_slots
from zapvet.scheduling.booking import OrgPolicy, day_slots, load_policy

CARE: Final = "care_invitation"
#: High 32 bits of the per-organization care planning lock (`pg_advisory_xact_lock`).
CARE_LOCKS = 7303
#: How many free starts an invitation offers (one per day), and how far ahead it looks.
OFFERED, LOOKAHEAD_DAYS = 3, 14

_DUE = text(
    """
    WITH last_done AS (
      SELECT DISTINCT ON (a.pet_id, a.service_id)
             a.id, a.pet_id, a.service_id, a.contact_id, a.starts_at
        FROM appointments a
       WHERE a.organization_id = :org AND a.status = 'completed' AND a.pet_id IS NOT NULL
         AND a.service_id IN (SELECT id FROM services
                               WHERE organization_id = :org AND is_active
                                 AND return_after_days IS NOT NULL)
       ORDER BY a.pet_id, a.service_id, a.starts_at DESC
    )
    SELECT l.id, l.pet_id, l.service_id, l.contact_id, l.starts_at
      FROM last_done l
      JOIN services s ON s.organization_id = :org AND s.id = l.service_id
      JOIN contacts c ON c.organization_id = :org AND c.id = l.contact_id
     WHERE CAST(l.starts_at AT TIME ZONE :zone AS date) + s.return_after_days <= :today
       AND c.status = 'active' AND c.opted_out_at IS NULL
       AND NOT EXISTS (
             SELECT 1 FROM conversations v
              WHERE v.organization_id = :org AND v.contact_id = l.contact_id
                AND v.status = 'escalated')
       AND NOT EXISTS (
             SELECT 1 FROM appointments f
              WHERE f.organization_id = :org AND f.pet_id = l.pet_id
                AND f.service_id = l.service_id AND f.starts_at > l.starts_at
                AND f.status IN ('scheduled', 'confirmed'))
       AND NOT EXISTS (
             SELECT 1 FROM aurora_proactive_messages m
              WHERE m.organization_id = :org AND m.pet_id = l.pet_id
                AND m.service_id = l.service_id AND m.message_type = 'care_invitation'
                AND m.status IN ('pending', 'sending', 'sent')
                AND m.scheduled_for > :cooldown_start)
       AND NOT EXISTS (
             SELECT 1 FROM aurora_proactive_messages m
              WHERE m.organization_id = :org AND m.contact_id = l.contact_id
                AND m.message_type = 'care_invitation'
                AND m.status IN ('pending', 'sending', 'sent')
                AND m.scheduled_for >= :day_start)
     ORDER BY CAST(l.starts_at AT TIME ZONE :zone AS date) + s.return_after_days, l.id
     LIMIT :limit
    """
)
_SENT_TODAY = text(
    """
    SELECT count(*) FROM aurora_proactive_messages
     WHERE organization_id = :org AND message_type = 'care_invitation'
       AND status IN ('pending', 'sending', 'sent')
       AND scheduled_for >= :day_start AND scheduled_for < :day_end
    """
)


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


def local_day(zone: ZoneInfo, day: date) -> tuple[datetime, datetime]:
    """UTC bounds of local `day`."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


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
class _Invitation:
    org: OrgPolicy
    contact: Contact
    pet: Pet
    service: Service
    last_visit: datetime


async def _content(session: AsyncSession, invitation: _Invitation, now: datetime) -> str | None:
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


async def schedule_care_invitations(session: AsyncSession, now: datetime) -> list[int]:
    """Queue an invitation for each pet due again, in every organization with `[care]` on
    whose window is open now, up to its daily cap; the new rows' ids."""
    found = await session.exec(
        select(Organization, AISettings)
        .join(AISettings, col(AISettings.organization_id) == col(Organization.id))
        .where(col(AISettings.care_enabled))
        .order_by(col(Organization.id))
    )
    created: list[int] = []
    for org, settings in list(found):
        assert org.id is not None
        if in_care_window(settings, now.astimezone(ZoneInfo(org.timezone))):
            created += await _plan_organization(session, org.id, settings, now)
    return created


async def _plan_organization(
    session: AsyncSession, org_id: int, settings: AISettings, now: datetime
) -> list[int]:
    # Two schedulers plan one organization one after the other: the second one's queries
    # (READ COMMITTED: a snapshot per statement) see the first one's rows and cap.
    await session.exec(  # type: ignore[call-overload]
        text("SELECT pg_advisory_xact_lock(:space, CAST(:org AS integer))"),
        params={"space": CARE_LOCKS, "org": org_id},
    )
    policy = await load_policy(session, org_id)
    today = now.astimezone(policy.zone).date()
    day_start, day_end = local_day(policy.zone, today)
    sent = (
        await session.exec(  # type: ignore[call-overload]
            _SENT_TODAY, params={"org": org_id, "day_start": day_start, "day_end": day_end}
        )
    ).one()[0]
    room = settings.care_daily_cap - int(sent)
    if room <= 0:
        return []
    due = (
        await session.exec(  # type: ignore[call-overload]
            _DUE,
            params={
                "org": org_id,
                "zone": policy.zone.key,
                "today": today,
                "cooldown_start": now - timedelta(days=settings.care_cooldown_days),
                "day_start": day_start,
                "limit": room * 3,  # a tutor with several pets due gets one of them today
            },
        )
    ).all()
    batch: list[dict[str, object]] = []
    invited: set[int] = set()
    for cycle_id, pet_id, service_id, contact_id, starts_at in due:
        if contact_id in invited or len(batch) >= room:
            continue
        invitation = await _load(session, policy, contact_id, pet_id, service_id, starts_at)
        content = await _content(session, invitation, now) if invitation else None
        if content is None:
            continue
        invited.add(contact_id)
        batch.append(
            {
                "organization_id": org_id,
                "contact_id": contact_id,
                "pet_id": pet_id,
                "service_id": service_id,
                "message_type": CARE,
                "content": content,
                "scheduled_for": now,
                "status": "pending",
                "dedupe_key": care_key(pet_id, service_id, cycle_id),
            }
        )
    return await insert_rows(session, batch)


async def _load(
    session: AsyncSession,
    org: OrgPolicy,
    contact_id: int,
    pet_id: int,
    service_id: int,
    last_visit: datetime,
) -> _Invitation | None:
    contact = await session.get(Contact, contact_id)
    pet = await session.get(Pet, pet_id)
    service = await session.get(Service, service_id)
    if contact is None or pet is None or service is None:
        return None
    if {contact.organization_id, pet.organization_id, service.organization_id} != {
        org.organization_id
    }:
        return None
    return _Invitation(org, contact, pet, service, last_visit)


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
    invitation = await _load(session, policy, pet.contact_id, pet_id, service_id, last_visit)
    return await _content(session, invitation, now) if invitation else None


def release(message: AuroraProactiveMessage) -> None:
    """An invitation that did not go out frees its cycle's key (kept in `error`)."""
    if message.message_type == CARE and message.dedupe_key is not None:
        message.error = f"{message.error} ({message.dedupe_key})"
        message.dedupe_key = None
