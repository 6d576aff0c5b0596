"""Sending again what did not go: `zapvet webhooks requeue` (deliveries back to pending, with
another day of retries) and `enable` (an endpoint a 410 disabled). Scoped by the organization.

Nothing is sent from here: what is made due, the scheduler claims within a second, each
delivery still behind what waits before it on its line (endpoint × resource).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession


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
