"""Telling the owners that a WhatsApp instance went down, through one that still works.

Evolution posts `connection.update` "close" only once it has given up reconnecting (the
phone logged the session out, or WhatsApp refused it) and "refused" once it stopped making
QR codes: a person has to scan a new QR code. The bridge stores that state
(`instance_connections`); the scheduler calls `alert_disconnections`, which tells each
active owner number once per outage (`alerted_at` against `changed_at`). A message through
the disconnected number cannot arrive, so the alert goes through another active instance of
the organization that is not known to be down (a Cloud API number, a second Evolution
instance); when there is none it is stored already cancelled, with that reason, so the
outage is on record for `zapvet status`, metrics and the alert rule
`ZapvetInstanceDisconnected` to tell instead. Once the instance is open again the owners
hear that too (`announce_recoveries`), through any working instance, itself included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.logging import get_logger
from zapvet.proactive.planning import CONNECTION, insert_rows
from zapvet.proactive.wording import disconnected_text, reconnected_text

log = get_logger("zapvet.proactive.connection")

#: States after which Evolution does not reconnect by itself.
DOWN_STATES = ("close", "refused")
UNDELIVERABLE = (
    "not delivered: no other working WhatsApp instance in the organization to send it through"
)

_OUTAGES = text(
    """
    SELECT c.instance_id, c.organization_id, c.state, c.reason, c.changed_at, w.instance,
           o.timezone
      FROM instance_connections c
      JOIN whatsapp_instances w ON w.id = c.instance_id AND w.is_active
      JOIN organizations o ON o.id = c.organization_id
     WHERE c.state IN ('close', 'refused')
       AND (c.alerted_at IS NULL OR c.alerted_at < c.changed_at)
     ORDER BY c.changed_at
     LIMIT 50
       FOR UPDATE OF c SKIP LOCKED
    """
)
#: The organization's active instances not known to be down, Cloud API numbers first
#: (they report no connection state: their link is Meta's).
_WORKING = text(
    """
    SELECT w.id
      FROM whatsapp_instances w
      LEFT JOIN instance_connections c ON c.instance_id = w.id
     WHERE w.organization_id = :organization_id AND w.is_active AND w.id <> :except_id
       AND (c.state IS NULL OR c.state = 'open')
     ORDER BY w.provider = 'cloud' DESC, w.id
     LIMIT 1
    """
)
#: Instances open again after an outage the owners were told about (or tried to be).
_RECOVERIES = text(
    """
    SELECT c.instance_id, c.organization_id, c.changed_at, w.instance, o.timezone
      FROM instance_connections c
      JOIN whatsapp_instances w ON w.id = c.instance_id AND w.is_active
      JOIN organizations o ON o.id = c.organization_id
     WHERE c.state = 'open' AND c.alerted_at IS NOT NULL AND c.alerted_at < c.changed_at
     ORDER BY c.changed_at
     LIMIT 50
       FOR UPDATE OF c SKIP LOCKED
    """
)
_RECOVERED = text("UPDATE instance_connections SET alerted_at = NULL WHERE instance_id = :id")
_OWNERS = text(
    "SELECT id FROM aurora_owner_numbers WHERE organization_id = :organization_id AND is_active"
    " ORDER BY id"
)
_ALERTED = text("UPDATE instance_connections SET alerted_at = :now WHERE instance_id = :id")


@dataclass(frozen=True)
class Route:
    """Where a connection alert goes out: the working instance and the owner's number."""

    instance_id: int
    chat_id: str


async def working_instance(
    session: AsyncSession, organization_id: int, except_id: int = 0
) -> int | None:
    """An active instance of the organization other than `except_id` not known to be down."""
    connection = await session.connection()
    found = await connection.scalar(
        _WORKING, {"organization_id": organization_id, "except_id": except_id}
    )
    return int(found) if found is not None else None


async def alert_disconnections(session: AsyncSession, now: datetime) -> list[int]:
    """Queue the owners' alert for each instance newly down; the ids of rows to send."""
    connection = await session.connection()
    outages = (await connection.execute(_OUTAGES)).all()
    queued: list[int] = []
    for instance_id, organization_id, state, reason, changed_at, name, timezone in outages:
        owners = [
            row[0]
            for row in await connection.execute(_OWNERS, {"organization_id": organization_id})
        ]
        through = await working_instance(session, organization_id, instance_id)
        local = changed_at.astimezone(ZoneInfo(timezone))
        content = disconnected_text(name, state, reason, local)
        key = f"connection:{instance_id}:{int(changed_at.timestamp())}"
        rows: list[dict[str, object]] = [
            {
                "organization_id": organization_id,
                "owner_number_id": owner_id,
                "message_type": CONNECTION,
                "content": content,
                "scheduled_for": now,
                "status": "pending" if through is not None else "cancelled",
                "error": None if through is not None else UNDELIVERABLE,
                "dedupe_key": f"{key}:{owner_id}",
            }
            for owner_id in owners
        ]
        inserted = await insert_rows(session, rows)
        if through is not None:
            queued += inserted
        await connection.execute(_ALERTED, {"now": now, "id": instance_id})
        log.warning(
            "whatsapp instance down: owners alerted"
            if through is not None and owners
            else "whatsapp instance down: the owners cannot be told on WhatsApp",
            organizationId=organization_id,
            instance=name,
            state=state,
            reason=reason,
            owners=len(owners),
        )
    return queued


async def announce_recoveries(session: AsyncSession, now: datetime) -> list[int]:
    """Tell the owners an instance they were alerted about is connected again; row ids."""
    connection = await session.connection()
    recoveries = (await connection.execute(_RECOVERIES)).all()
    queued: list[int] = []
    for instance_id, organization_id, changed_at, name, timezone in recoveries:
        found = await connection.execute(_OWNERS, {"organization_id": organization_id})
        local = changed_at.astimezone(ZoneInfo(timezone))
        key = f"connection:{instance_id}:{int(changed_at.timestamp())}:back"
        rows: list[dict[str, object]] = [
            {
                "organization_id": organization_id,
                "owner_number_id": owner_id,
                "message_type": CONNECTION,
                "content": reconnected_text(name, local),
                "scheduled_for": now,
                "status": "pending",
                "dedupe_key": f"{key}:{owner_id}",
            }
            for (owner_id,) in found
        ]
        queued += await insert_rows(session, rows)
        await connection.execute(_RECOVERED, {"id": instance_id})
        log.info("whatsapp instance back: owners told", instance=name, owners=len(rows))
    return queued


async def route(session: AsyncSession, organization_id: int, owner_phone: str) -> Route | None:
    """How a connection alert reaches an owner now: a working instance (any: the outage's
    own is down) and the owner's number as digits (valid for both providers)."""
    instance_id = await working_instance(session, organization_id)
    digits = re.sub(r"\D", "", owner_phone)
    if instance_id is None or not digits:
        return None
    return Route(instance_id, digits)
