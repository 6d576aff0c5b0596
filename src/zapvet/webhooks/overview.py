"""What `zapvet webhooks list` and `deliveries` read: an organization's endpoints with their
deliveries' figures and last attempt, and its latest deliveries. Every statement is scoped by
the organization, so an id of another organization's row is unknown here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.webhooks.delivery import event_id

#: The window of `list`'s delivered figure.
RECENT = timedelta(hours=24)
WAITING = ("pending", "queued")


@dataclass(frozen=True)
class LastAttempt:
    """The most recently attempted delivery of an endpoint, as it stands."""

    delivery_id: int
    status: str
    status_code: int | None
    at: datetime


@dataclass(frozen=True)
class Endpoint:
    """One endpoint, its state and its deliveries' figures."""

    id: int
    url: str
    events: list[str]
    #: `enabled` of the organization file.
    enabled: bool
    allow_private_targets: bool
    #: Set when the receiver answered 410 Gone.
    disabled_at: datetime | None
    disabled_reason: str | None
    waiting: int
    dead: int
    delivered_recently: int
    last: LastAttempt | None

    @property
    def sending(self) -> bool:
        return self.enabled and self.disabled_at is None


@dataclass(frozen=True)
class Delivery:
    """One delivery, as `zapvet webhooks deliveries` shows it."""

    id: int
    endpoint_id: int
    event_type: str
    event_id: str
    resource: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    #: When it is due (pending) or its lease ends (queued); None once settled.
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


_ENDPOINTS = text("""
SELECT p.id, p.url, p.events, p.enabled, p.allow_private_targets, p.disabled_at,
       p.disabled_reason,
       count(d.id) FILTER (WHERE d.status IN ('pending', 'queued')),
       count(d.id) FILTER (WHERE d.status = 'dead'),
       count(d.id) FILTER (WHERE d.status = 'delivered' AND d.delivered_at > :since),
       last.id, last.status, last.last_status_code, last.updated_at
  FROM webhook_endpoints p
  LEFT JOIN webhook_deliveries d
    ON d.organization_id = p.organization_id AND d.endpoint_id = p.id
  LEFT JOIN LATERAL (
    SELECT l.id, l.status, l.last_status_code, l.updated_at FROM webhook_deliveries l
     WHERE l.organization_id = p.organization_id AND l.endpoint_id = p.id AND l.attempts > 0
     ORDER BY l.updated_at DESC, l.id DESC LIMIT 1) last ON true
 WHERE p.organization_id = :org
 GROUP BY p.id, last.id, last.status, last.last_status_code, last.updated_at
 ORDER BY p.id
""")


async def endpoints(session: AsyncSession, org_id: int, *, now: datetime) -> list[Endpoint]:
    """The organization's endpoints (those that left its file too: they are off), by id."""
    connection = await session.connection()
    rows = await connection.execute(_ENDPOINTS, {"org": org_id, "since": now - RECENT})
    found = []
    for row in rows:
        last_id, last_status, last_code, last_at = row[10:]
        found.append(
            Endpoint(
                id=row[0],
                url=row[1],
                events=list(row[2]),
                enabled=row[3],
                allow_private_targets=row[4],
                disabled_at=row[5],
                disabled_reason=row[6],
                waiting=row[7],
                dead=row[8],
                delivered_recently=row[9],
                last=None
                if last_id is None
                else LastAttempt(last_id, last_status, last_code, last_at),
            )
        )
    return found


_DELIVERIES = text("""
SELECT d.id, d.endpoint_id, v.type, v.uid, d.resource, d.status, d.attempts,
       d.last_status_code, d.last_error, d.next_attempt_at, d.delivered_at, d.created_at
  FROM webhook_deliveries d
  JOIN webhook_events v ON v.organization_id = d.organization_id AND v.id = d.event_id
 WHERE d.organization_id = :org
   AND (CAST(:status AS text) IS NULL OR d.status = :status)
   AND (CAST(:endpoint AS bigint) IS NULL OR d.endpoint_id = :endpoint)
 ORDER BY d.id DESC
 LIMIT :limit
""")


async def deliveries(
    session: AsyncSession,
    org_id: int,
    *,
    status: str | None = None,
    endpoint_id: int | None = None,
    limit: int = 20,
) -> list[Delivery]:
    """The organization's deliveries, newest first, optionally of one status or endpoint."""
    connection = await session.connection()
    rows = await connection.execute(
        _DELIVERIES, {"org": org_id, "status": status, "endpoint": endpoint_id, "limit": limit}
    )
    return [
        Delivery(
            id=row[0],
            endpoint_id=row[1],
            event_type=row[2],
            event_id=event_id(row[3]),
            resource=row[4],
            status=row[5],
            attempts=row[6],
            last_status_code=row[7],
            last_error=row[8],
            next_attempt_at=row[9] if row[5] in WAITING else None,
            delivered_at=row[10],
            created_at=row[11],
        )
        for row in rows
    ]


async def has_endpoint(session: AsyncSession, org_id: int, endpoint_id: int) -> bool:
    connection = await session.connection()
    found = await connection.scalar(
        text("SELECT 1 FROM webhook_endpoints WHERE organization_id = :org AND id = :id"),
        {"org": org_id, "id": endpoint_id},
    )
    return found is not None


async def timezone_of(session: AsyncSession, org_id: int) -> str:
    """The organization's timezone, which times are shown in."""
    connection = await session.connection()
    found = await connection.scalar(
        text("SELECT timezone FROM organizations WHERE id = :org"), {"org": org_id}
    )
    return str(found)
