"""The events outbox: one statement, in the transaction of the change that caused the event.

`emit_*` write the event and one delivery per enabled endpoint of the organization that
listens to its type, or nothing when none does (with the cached configuration at hand,
without asking the database). The `data` each one writes is built in SQL from the rows as
the transaction sees them, so every place that books, cancels or registers sends the same
shape: the shapes are documented, with a JSON Schema per event, in `docs/webhooks/`.

A delivery's `resource` (`appointment:12`, `contact:3`, `conversation:7`) is what its
endpoint's deliveries are kept in order by.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import uuid4

from sqlalchemy import text

EventType = Literal[
    "appointment.created",
    "appointment.rescheduled",
    "appointment.cancelled",
    "appointment.completed",
    "appointment.no_show",
    "contact.created",
    "contact.updated",
    "pet.created",
    "conversation.escalated",
    "conversation.handed_back",
    "message.received",
    "message.sent",
]
EVENT_TYPES: tuple[EventType, ...] = EventType.__args__  # type: ignore[attr-defined]
#: Sent only to endpoints that list them (every message, so a busy shop's endpoint sees a lot).
OPT_IN: frozenset[str] = frozenset({"message.received", "message.sent"})
#: What `zapvet webhooks test` sends: never written to the outbox.
TEST_EVENT = "webhook.test"


class _Executes(Protocol):
    async def execute(self, statement: Any, parameters: Any = ..., /) -> Any: ...


class _Listeners(Protocol):
    def listens(self, event_type: str) -> bool: ...


def _iso(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


def _phone(alias: str) -> str:
    return f"CASE WHEN {alias}.phone ~ '^[0-9]+$' THEN '+' || {alias}.phone ELSE {alias}.phone END"


def _person(alias: str) -> str:
    return f"jsonb_build_object('id', {alias}.id, 'name', {alias}.name, 'phone', {_phone(alias)})"


_APPOINTMENT = (
    f"""
jsonb_build_object('appointment', jsonb_build_object(
    'id', a.id, 'status', a.status,
    'starts_at', {_iso("a.starts_at")}, 'ends_at', {_iso("a.ends_at")},
    'price_cents', a.price_cents, 'source', a.source,
    'service', jsonb_build_object('id', s.id, 'name', s.name, 'category', s.category),
    'resource', jsonb_build_object('id', r.id, 'name', r.name),
    'pet', CASE WHEN p.id IS NULL THEN NULL
                ELSE jsonb_build_object('id', p.id, 'name', p.name, 'species', p.species) END,
    'contact', {_person("c")}))
""",
    "'appointment:' || a.id",
    "a.contact_id",
    """
  FROM appointments a
  JOIN services s ON s.organization_id = a.organization_id AND s.id = a.service_id
  JOIN resources r ON r.organization_id = a.organization_id AND r.id = a.resource_id
  JOIN contacts c ON c.organization_id = a.organization_id AND c.id = a.contact_id
  LEFT JOIN pets p ON p.organization_id = a.organization_id AND p.id = a.pet_id
 WHERE a.organization_id = :org AND a.id = :id
""",
)

_CONTACT = (
    f"""
jsonb_build_object('contact', jsonb_build_object(
    'id', c.id, 'name', c.name, 'phone', {_phone("c")}, 'status', c.status,
    'created_at', {_iso("c.created_at")}))
""",
    "'contact:' || c.id",
    "c.id",
    """
  FROM contacts c WHERE c.organization_id = :org AND c.id = :id
""",
)

_PET = (
    f"""
jsonb_build_object('pet', jsonb_build_object(
    'id', p.id, 'name', p.name, 'species', p.species, 'breed', p.breed,
    'age_years', p.age_years, 'contact', {_person("c")}))
""",
    "'contact:' || c.id",
    "c.id",
    """
  FROM pets p JOIN contacts c ON c.organization_id = p.organization_id AND c.id = p.contact_id
 WHERE p.organization_id = :org AND p.id = :id
""",
)

_CONVERSATION = (
    f"""
jsonb_build_object('conversation', jsonb_build_object(
    'id', v.id, 'status', v.status, 'escalation_reason', v.escalation_reason,
    'escalated_at', {_iso("v.escalated_at")}, 'contact', {_person("c")}))
""",
    "'conversation:' || v.id",
    "c.id",
    """
  FROM conversations v
  JOIN contacts c ON c.organization_id = v.organization_id AND c.id = v.contact_id
 WHERE v.organization_id = :org AND v.id = :id
""",
)

_MESSAGE = (
    f"""
jsonb_build_object('message', jsonb_strip_nulls(jsonb_build_object(
    'id', m.id, 'conversation_id', m.conversation_id, 'direction', m.direction,
    'type', m.message_type, 'whatsapp_message_id', m.whatsapp_message_id,
    'at', {_iso("m.message_at")}, 'sent_by_ai', m.sent_by_ai,
    'by', CASE WHEN m.direction = 'incoming' THEN 'contact'
               WHEN m.sent_by_ai THEN 'ai' ELSE COALESCE(m.meta->>'by', 'staff') END,
    'text', CASE WHEN COALESCE(ai.webhook_message_text, false) THEN m.content END))
    || jsonb_build_object('contact', {_person("c")}))
""",
    "'conversation:' || m.conversation_id",
    "c.id",
    """
  FROM messages m
  JOIN conversations v ON v.organization_id = m.organization_id AND v.id = m.conversation_id
  JOIN contacts c ON c.organization_id = v.organization_id AND c.id = v.contact_id
  LEFT JOIN ai_settings ai ON ai.organization_id = m.organization_id
 WHERE m.organization_id = :org AND m.id = :id
   AND NOT EXISTS (  -- an owner's chat with Aurora is not the shop's conversation with a client
       SELECT 1 FROM contact_identities i
         JOIN aurora_owner_numbers w ON w.organization_id = i.organization_id AND w.is_active
          AND ((i.kind = 'phone' AND w.phone_key = i.value) OR (i.kind = 'lid' AND w.lid = i.value)
               OR (i.kind = 'bsuid' AND w.bsuid = i.value))
        WHERE i.organization_id = c.organization_id AND i.contact_id = c.id)
""",
)

_SHAPES: dict[str, tuple[str, str, str, str]] = {
    "appointment": _APPOINTMENT,
    "contact": _CONTACT,
    "pet": _PET,
    "conversation": _CONVERSATION,
    "message": _MESSAGE,
}


def _statement(shape: str) -> Any:
    data, resource, contact, source = _SHAPES[shape]
    return text(f"""
WITH targets AS (
    SELECT id FROM webhook_endpoints
     WHERE organization_id = :org AND enabled AND disabled_at IS NULL
       AND events @> jsonb_build_array(CAST(:type AS text))
), event AS (
    INSERT INTO webhook_events (organization_id, uid, type, resource, contact_id, data, created_at)
    SELECT :org, :uid, :type, {resource}, {contact},
           ({data}) || CAST(:extra AS jsonb), :now
    {source}
       AND EXISTS (SELECT 1 FROM targets)
    RETURNING id, resource, created_at
)
INSERT INTO webhook_deliveries (organization_id, event_id, endpoint_id, resource, status,
                                attempts, next_attempt_at, retry_from, created_at, updated_at)
SELECT :org, event.id, targets.id, event.resource, 'pending', 0, event.created_at,
       event.created_at, event.created_at, event.created_at
  FROM event CROSS JOIN targets
""")


_STATEMENTS = {shape: _statement(shape) for shape in _SHAPES}

Shape = Literal["appointment", "contact", "pet", "conversation", "message"]


async def emit(
    connection: _Executes,
    event_type: EventType,
    *,
    organization_id: int,
    about: int,
    now: datetime,
    extra: Mapping[str, Any] | None = None,
    config: _Listeners | None = None,
) -> None:
    """Write `event_type` about row `about` (an appointment, contact, pet, conversation or
    message id, by the type's prefix) for every endpoint listening, in the caller's
    transaction. `extra` is merged into `data` (e.g. `previous` of a reschedule). With the
    organization's cached `config`, an event nobody listens to costs no statement."""
    if config is not None and not config.listens(event_type):
        return
    shape = event_type.split(".", 1)[0]
    await connection.execute(
        _STATEMENTS[shape],
        {
            "org": organization_id,
            "id": about,
            "type": event_type,
            "uid": uuid4(),
            "now": now,
            "extra": json.dumps(dict(extra or {}), default=str),
        },
    )
