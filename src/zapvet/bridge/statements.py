"""The webhook's hot statements, in Core SQL: one round trip each, no unit of work.

A plain text message from a known contact costs three statements: `contact_id_for` (finds
the contact by identity, bumps `last_contact_at`, reads the configuration version and
whether the contact is blocked),
`open_conversation_id` (finds or opens the open conversation, bumping `last_message_at`)
and `insert_message`; a first contact costs one more (contact and identities at once).
The ORM twins in `directory.py` serve the other callers and say what these must do.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Table, TextClause, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from zapvet.models import Message
from zapvet.models.base import utcnow
from zapvet.models.contact import IdentityKind

_OPEN_CONVERSATION = text(
    """
    WITH found AS (
        UPDATE conversations SET last_message_at = :now, updated_at = :updated
        WHERE organization_id = :org AND contact_id = :contact AND status <> 'closed'
        RETURNING id
    ), opened AS (
        INSERT INTO conversations
            (organization_id, contact_id, status, last_message_at, created_at, updated_at)
        SELECT :org, :contact, 'active', :now, :updated, :updated
        WHERE NOT EXISTS (SELECT FROM found)
        ON CONFLICT DO NOTHING
        RETURNING id
    )
    SELECT id FROM found UNION ALL SELECT id FROM opened
    """
)

_PAUSE = text(
    "UPDATE conversations SET bot_paused_until = :until, updated_at = :updated WHERE id = :id"
)

_LEARN_OWNER = text(
    "UPDATE aurora_owner_numbers"
    " SET lid = COALESCE(NULLIF(lid, ''), :lid), bsuid = COALESCE(NULLIF(bsuid, ''), :bsuid)"
    " WHERE id = :id"
)

_OURS = text(
    "SELECT id FROM messages WHERE organization_id = :org AND whatsapp_message_id = :provider_id"
)

_MESSAGES: Table = Message.__table__  # type: ignore[attr-defined]
_INSERT_MESSAGE = (
    insert(_MESSAGES)
    .on_conflict_do_nothing(
        index_elements=["organization_id", "whatsapp_message_id"],
        index_where=text("whatsapp_message_id IS NOT NULL"),
    )
    .returning(_MESSAGES.c.id)
)


def _pairs(arity: int) -> str:
    """`(:k0, :v0), (:k1, :v1), …`: identities as (kind, value) rows; `_pair_params` binds them."""
    return ", ".join(f"(:k{i}, :v{i})" for i in range(arity))


def _pair_params(keys: list[tuple[IdentityKind, str]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for i, (kind, value) in enumerate(keys):
        params[f"k{i}"], params[f"v{i}"] = kind, value
    return params


@cache
def _known_contact(arity: int) -> TextClause:
    pairs = _pairs(arity)
    return text(
        f"""
        WITH known AS (
            SELECT contact_id, kind FROM contact_identities
            WHERE organization_id = :org AND (kind, value) IN ({pairs})
        ), bumped AS (
            UPDATE contacts SET last_contact_at = :now, updated_at = :updated,
                name = COALESCE(NULLIF(name, ''), :name),
                phone = COALESCE(NULLIF(phone, ''), :phone)
            WHERE organization_id = :org AND id = (SELECT min(contact_id) FROM known)
            RETURNING id, status
        )
        SELECT (SELECT config_version FROM organizations WHERE id = :org),
               (SELECT id FROM bumped),
               ARRAY(SELECT kind FROM known),
               (SELECT status = 'blocked' FROM bumped),
               -- The row as it was before `bumped` (a WITH's siblings see the same snapshot):
               -- which empty fields this webhook fills.
               ARRAY(SELECT field FROM contacts c,
                            LATERAL (VALUES ('name', c.name, CAST(:name AS text)),
                                            ('phone', c.phone, CAST(:phone AS text)))
                                    AS fill (field, was, given)
                      WHERE c.organization_id = :org
                        AND c.id = (SELECT min(contact_id) FROM known)
                        AND COALESCE(fill.was, '') = '' AND COALESCE(fill.given, '') <> ''
                        AND EXISTS (SELECT FROM bumped))
        """
    )


@cache
def _new_contact(arity: int) -> TextClause:
    pairs = _pairs(arity)
    return text(
        f"""
        WITH created AS (
            INSERT INTO contacts
                (organization_id, phone, name, status, last_contact_at, created_at, updated_at)
            VALUES (:org, :phone, :name, 'active', :now, :updated, :updated)
            RETURNING id
        ), named AS (
            INSERT INTO contact_identities (organization_id, contact_id, kind, value, created_at)
            SELECT :org, created.id, pair.kind, pair.value, :updated
            FROM created, (VALUES {pairs}) AS pair (kind, value)
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT (SELECT id FROM created), (SELECT count(*) FROM named)
        """
    )


@cache
def _learn_identities(arity: int) -> TextClause:
    pairs = _pairs(arity)
    return text(
        f"""
        INSERT INTO contact_identities (organization_id, contact_id, kind, value, created_at)
        SELECT :org, :contact, pair.kind, pair.value, :updated
        FROM (VALUES {pairs}) AS pair (kind, value)
        ON CONFLICT DO NOTHING
        """
    )


_FORGET_CONTACT = text("DELETE FROM contacts WHERE id = :id")


class FoundContact(NamedTuple):
    """What `contact_id_for` found: `created` says the contact is new (its first message),
    `filled` which of a known contact's empty fields ("name", "phone") the webhook filled."""

    version: int
    contact_id: int
    blocked: bool
    created: bool
    filled: tuple[str, ...] = ()


async def contact_id_for(
    conn: AsyncConnection,
    org_id: int,
    keys: list[tuple[IdentityKind, str]],
    *,
    name: str | None,
    phone: str | None,
    now: datetime,
) -> FoundContact:
    """`directory.contact_for` in Core SQL: the configuration version and the contact,
    creating the contact with its identities on first contact (never blocked: a number
    blocked before it wrote already has its contact) and recording identities it lacked.

    An identity another webhook records first stays theirs (the unique identity index
    decides, as in `contact_for`); a contact created in that race is dropped again.
    """
    params: dict[str, Any] = {"org": org_id, "now": now, "updated": utcnow()}
    params.update(name=name, phone=phone, **_pair_params(keys))
    first: int | None = None
    for _ in range(3):
        row = (await conn.execute(_known_contact(len(keys)), params)).one()
        first = int(row[0]) if first is None else first
        contact_id, kinds = row[1], set(row[2])
        if contact_id is not None:
            missing = [(kind, value) for kind, value in keys if kind not in kinds]
            if missing:
                learn = {"org": org_id, "contact": contact_id, "updated": params["updated"]}
                learn.update(_pair_params(missing))
                await conn.execute(_learn_identities(len(missing)), learn)
            return FoundContact(
                first, int(contact_id), bool(row[3]), created=False, filled=tuple(row[4])
            )
        created = (await conn.execute(_new_contact(len(keys)), params)).one()
        if created[1] == len(keys):
            return FoundContact(first, int(created[0]), blocked=False, created=True)
        # Someone recorded one of these identities meanwhile: theirs wins, look again.
        await conn.execute(_FORGET_CONTACT, {"id": created[0]})
    raise RuntimeError("could not settle the contact's identities")


async def open_conversation_id(
    conn: AsyncConnection, org_id: int, contact_id: int, now: datetime
) -> int:
    """`directory.open_conversation` in one statement: the open conversation's id, marked
    as written to `now`, opened if there is none (the one-open index settles races)."""
    params = {"org": org_id, "contact": contact_id, "now": now, "updated": utcnow()}
    for _ in range(3):
        found = (await conn.execute(_OPEN_CONVERSATION, params)).scalar()
        if found is not None:
            return int(found)
        # Another transaction opened one and committed meanwhile: this statement's snapshot
        # did not see it, the next one will.
    raise RuntimeError("could not open the conversation")


async def pause(conn: AsyncConnection, conversation_id: int, until: datetime) -> None:
    await conn.execute(_PAUSE, {"id": conversation_id, "until": until, "updated": utcnow()})


async def learn_owner(
    conn: AsyncConnection, owner_id: int, lid: str | None, bsuid: str | None
) -> None:
    """Record the LID/BSUID an owner number was seen with (where it had none)."""
    await conn.execute(_LEARN_OWNER, {"id": owner_id, "lid": lid, "bsuid": bsuid})


async def known_message(conn: AsyncConnection, org_id: int, provider_id: str) -> bool:
    found = await conn.execute(_OURS, {"org": org_id, "provider_id": provider_id})
    return found.first() is not None


async def insert_message(conn: AsyncConnection, values: dict[str, Any]) -> int | None:
    """Insert a message unless its provider id is known; the new id, or None if a duplicate."""
    found = (await conn.execute(_INSERT_MESSAGE, values)).scalar()
    return None if found is None else int(found)
