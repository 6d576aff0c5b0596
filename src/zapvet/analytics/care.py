"""What care invitations brought back, computed by SQL over one organization's rows.

An invitation counts when it was sent in the period (local dates, inclusive). It is followed
by a booking when an appointment of the same pet and service was created from the moment it
was sent until `within_days` later and is not cancelled or a no-show (the first such
appointment; one per invitation). Revenue is the agreed price of those bookings, in integer
cents; the part already completed is shown on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.analytics.figures import period

_RESULTS = text(
    """
    SELECT s.name, count(*), count(b.id), count(DISTINCT b.contact_id),
           count(b.id) FILTER (WHERE b.status = 'completed'),
           coalesce(sum(b.price_cents), 0),
           coalesce(sum(b.price_cents) FILTER (WHERE b.status = 'completed'), 0)
      FROM aurora_proactive_messages m
      JOIN services s ON s.organization_id = m.organization_id AND s.id = m.service_id
      LEFT JOIN LATERAL (
            SELECT a.id, a.contact_id, a.status, a.price_cents
              FROM appointments a
             WHERE a.organization_id = m.organization_id AND a.pet_id = m.pet_id
               AND a.service_id = m.service_id
               AND a.created_at >= m.sent_at AND a.created_at < m.sent_at + :within
               AND a.status IN ('scheduled', 'confirmed', 'completed')
             ORDER BY a.created_at, a.id
             LIMIT 1) b ON true
     WHERE m.organization_id = :org AND m.message_type = 'care_invitation'
       AND m.status = 'sent' AND m.sent_at >= :start AND m.sent_at < :end
     GROUP BY GROUPING SETS ((s.name), ())
     ORDER BY s.name NULLS FIRST
    """
)


@dataclass(frozen=True)
class CareFigures:
    """Invitations sent and what followed them (a whole period, or one service)."""

    invitations_sent: int
    bookings: int
    clients_returned: int
    completed: int
    revenue_cents: int
    completed_revenue_cents: int


@dataclass(frozen=True)
class CareResults:
    start: date
    end: date
    within_days: int
    total: CareFigures
    per_service: dict[str, CareFigures]


async def care_results(
    session: AsyncSession, org_id: int, zone: ZoneInfo, start: date, end: date, within_days: int
) -> CareResults:
    """Invitations sent from `start` to `end` (local, inclusive) and the bookings that
    followed each within `within_days`."""
    bounds = period(zone, start, end)
    rows = (
        await session.exec(  # type: ignore[call-overload]
            _RESULTS,
            params={
                "org": org_id,
                "start": bounds[0],
                "end": bounds[1],
                "within": timedelta(days=within_days),
            },
        )
    ).all()
    total = CareFigures(0, 0, 0, 0, 0, 0)
    per_service: dict[str, CareFigures] = {}
    for name, *values in rows:
        figures = CareFigures(*(int(value) for value in values))
        if name is None:
            total = figures
        else:
            per_service[name] = figures
    return CareResults(start, end, within_days, total, per_service)
