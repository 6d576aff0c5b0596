"""What `zapvet webhooks` reads and changes: endpoints with their figures, deliveries,
requeueing, and enabling an endpoint a 410 disabled. Every statement is scoped by the
organization, so an id of another organization's row is unknown here.

Nothing is sent from here: a requeued delivery or an enabled endpoint's waiting deliveries
are due at once, and the scheduler claims what is due every second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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
        (id_, url, events, enabled, private, disabled_at, reason, waiting, dead, recent) = row[:10]
        last_id, last_status, last_code, last_at = row[10:]
        last = None if last_id is None else LastAttempt(last_id, last_status, last_code, last_at)
        found.append(
            Endpoint(
                id_,
                url,
                list(events),
                enabled,
                private,
                disabled_at,
                reason,
                waiting,
                dead,
                recent,
                last,
            )  # fmt: skip
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


@dataclass(frozen=True)
class Requeued:
    """What `requeue` did: `count` deliveries made due (`held` of them for an endpoint that
    is not sending: off in the file or disabled by a 410), or nothing because some of those
    asked for are `unknown` (not of this organization), `delivered` or `queued` (in flight)."""

    count: int = 0
    held: int = 0
    unknown: tuple[int, ...] = ()
    delivered: tuple[int, ...] = ()
    queued: tuple[int, ...] = ()

    @property
    def refused(self) -> bool:
        return bool(self.unknown or self.delivered or self.queued)


_STATUSES = text("""
SELECT id, status FROM webhook_deliveries
 WHERE organization_id = :org AND id = ANY(CAST(:ids AS bigint[]))
""")

# `retry_from = now`: a requeued delivery gets another RETRY_FOR before it can die again.
_REQUEUE = text("""
UPDATE webhook_deliveries d
   SET status = 'pending', next_attempt_at = :now, retry_from = :now, updated_at = :now
  FROM webhook_endpoints p
 WHERE d.organization_id = :org AND d.status IN ('pending', 'dead')
   AND (d.id = ANY(CAST(:ids AS bigint[])) OR (:dead AND d.status = 'dead'))
   AND p.organization_id = d.organization_id AND p.id = d.endpoint_id
RETURNING p.enabled AND p.disabled_at IS NULL
""")


async def requeue(
    session: AsyncSession, org_id: int, ids: Sequence[int], *, dead: bool, now: datetime
) -> Requeued:
    """Make the deliveries `ids` (and every dead one, with `dead`) due now, with another
    day of retries; all of them or, when one of `ids` cannot be, none."""
    connection = await session.connection()
    wanted = sorted(set(ids))
    statuses: dict[int, str] = dict(
        (await connection.execute(_STATUSES, {"org": org_id, "ids": wanted})).all()
    )
    refusal = Requeued(
        unknown=tuple(i for i in wanted if i not in statuses),
        delivered=tuple(i for i in wanted if statuses.get(i) == "delivered"),
        queued=tuple(i for i in wanted if statuses.get(i) == "queued"),
    )
    if refusal.refused:
        return refusal
    sending = (
        await connection.execute(_REQUEUE, {"org": org_id, "ids": wanted, "dead": dead, "now": now})
    ).scalars()
    flags = list(sending)
    return Requeued(count=len(flags), held=flags.count(False))


@dataclass(frozen=True)
class Enabled:
    """What `enable` found: no such endpoint (`found` false), one that was not disabled
    (`was_disabled` false), or one enabled again with `waiting` deliveries to send.
    `in_file_enabled` false: the organization file has it off, so nothing goes anyway."""

    found: bool
    was_disabled: bool = False
    in_file_enabled: bool = True
    waiting: int = 0


_ENDPOINT = text("""
SELECT enabled, disabled_at FROM webhook_endpoints
 WHERE organization_id = :org AND id = :id FOR UPDATE
""")
_ENABLE = text("""
UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, updated_at = :now
 WHERE organization_id = :org AND id = :id
""")
# What waited while it was disabled may be older than a day: it gets another day, due now.
_REVIVE = text("""
UPDATE webhook_deliveries
   SET next_attempt_at = :now, retry_from = :now, updated_at = :now
 WHERE organization_id = :org AND endpoint_id = :id AND status = 'pending'
""")


async def enable(session: AsyncSession, org_id: int, endpoint_id: int, *, now: datetime) -> Enabled:
    """Clear the 410 mark of endpoint `endpoint_id`; its waiting deliveries are due now."""
    connection = await session.connection()
    row = (await connection.execute(_ENDPOINT, {"org": org_id, "id": endpoint_id})).first()
    if row is None:
        return Enabled(found=False)
    in_file, disabled_at = row
    if disabled_at is None:
        return Enabled(found=True, in_file_enabled=in_file)
    parameters = {"org": org_id, "id": endpoint_id, "now": now}
    await connection.execute(_ENABLE, parameters)
    revived: Any = await connection.execute(_REVIVE, parameters)
    return Enabled(found=True, was_disabled=True, in_file_enabled=in_file, waiting=revived.rowcount)


async def timezone_of(session: AsyncSession, org_id: int) -> str:
    """The organization's timezone, which times are shown in."""
    connection = await session.connection()
    found = await connection.scalar(
        text("SELECT timezone FROM organizations WHERE id = :org"), {"org": org_id}
    )
    return str(found)
