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

Right before an invitation goes out `proactive/invitation.py` checks everything again and
computes its free slots anew; one that does not go out frees its key (the pet may be invited
later in that cycle), and one that went out is never sent again for its cycle.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.models import AISettings, Organization
from zapvet.proactive.invitation import (
    CARE,
    care_key,
    in_care_window,
    invitation_content,
    load_invitation,
)
from zapvet.proactive.planning import insert_rows
from zapvet.scheduling.booking import load_policy

#: High 32 bits of the per-organization care planning lock (`pg_advisory_xact_lock`).
CARE_LOCKS = 7303

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


def local_day(zone: ZoneInfo, day: date) -> tuple[datetime, datetime]:
    """UTC bounds of local `day`."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


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
        invitation = await load_invitation(
            session, policy, contact_id, pet_id, service_id, starts_at
        )
        content = await invitation_content(session, invitation, now) if invitation else None
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
