"""LGPD: what is stored about one person (export), and erasing it (forget).

`export_contact` gathers everything a contact's rows hold: the contact and its identities,
pets, appointments, conversations with their messages (media transcripts included), the AI
interactions of those conversations, proactive messages to them, pending owner actions,
audit rows that name them, and the outgoing webhook events about them with how each was
delivered. `forget_contact` erases the personal data in the same rows (name,
phone, LID and BSUID, message contents and transcripts, pet names and notes, free text in
appointments, escalations, proactive messages and AI error texts, audit
snapshots; webhook events about them are deleted, so what was not sent yet is not sent)
and keeps the business facts the owner's figures are computed from (appointments
with their dates, services, resources and prices; message and turn counts and times), so
past revenue and counts do not change. The contact keeps its row under a stable pseudonym;
its identities are deleted, so the same number writing again is a new contact. Each erasure
writes an audit row that holds no erased data. Forgetting twice changes nothing more.

`COVERED` names every table that references a person, directly or through a conversation;
a test fails when a table that does is added without being listed (and handled) here.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, literal_column, or_
from sqlalchemy import delete as sa_delete
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.commands.blocking import Actor, find_by_phone
from zapvet.commands.proposals import Owner, propose
from zapvet.models import (
    AIInteraction,
    AISettings,
    Appointment,
    AuditLog,
    AuroraOwnerNumber,
    AuroraPendingAction,
    AuroraProactiveMessage,
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    Pet,
    Resource,
    Service,
    WebhookDelivery,
    WebhookEvent,
)
from zapvet.webhooks.delivery import event_id

#: Every table holding a person's data, and what forgetting does to it.
COVERED = {
    "contacts": "name and phone replaced by a pseudonym, notes erased; the row is kept",
    "contact_identities": "deleted (the number writing again is a new contact)",
    "pets": "name replaced by a pseudonym, notes erased; species, breed and age kept",
    "appointments": "notes erased; dates, service, resource, status and price kept",
    "conversations": "escalation reason erased; status and times kept",
    "messages": "content, media (transcripts, captions, files' names), chat id and provider "
    "error erased; direction, type, status and times kept",
    "ai_interactions": "error text erased; tokens, counts and times kept",
    "aurora_proactive_messages": "content and error erased; type, status and times kept",
    "aurora_pending_actions": "payload, preview and result erased; pending ones cancelled",
    "audit_log": "before/after snapshots of their rows erased; action, actor and time kept",
    "webhook_events": "deleted: events about the person (sent or not) are neither kept nor sent on",
    "webhook_deliveries": "deleted with their events",
}
ERASED = "[apagado]"
#: Keys whose values are personal in stored JSON (audit snapshots, pending actions).
_PERSONAL_KEYS = {"name", "phone", "notes", "content", "lid", "bsuid", "chat_id", "preview", "pet"}


def pseudonym(organization_id: int, contact_id: int) -> str:
    """A stable stand-in for a forgotten contact ("Cliente apagado 3f9c2a1b")."""
    digest = hashlib.sha256(f"zapvet:{organization_id}:{contact_id}".encode()).hexdigest()
    return f"Cliente apagado {digest[:8]}"


def _moment(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _row(obj: Any, *skip: str) -> dict[str, Any]:
    data = obj.model_dump(exclude={"organization_id", *skip})
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}


async def export_contact(
    session: AsyncSession, organization_id: int, phone: str
) -> dict[str, Any] | None:
    """Everything stored about the person at `phone`, as one JSON-ready document."""
    contact = await find_by_phone(session, organization_id, phone)
    if contact is None or contact.id is None:
        return None
    cid = contact.id

    async def all_of(model: Any, *where: Any) -> list[Any]:
        query = select(model).where(model.organization_id == organization_id, *where)
        return list(await session.exec(query.order_by(col(model.id))))

    identities = await all_of(ContactIdentity, ContactIdentity.contact_id == cid)
    pets = await all_of(Pet, Pet.contact_id == cid)
    conversations = await all_of(Conversation, Conversation.contact_id == cid)
    conversation_ids = [c.id for c in conversations]
    messages = await all_of(Message, col(Message.conversation_id).in_(conversation_ids))
    interactions = await all_of(
        AIInteraction, col(AIInteraction.conversation_id).in_(conversation_ids)
    )
    proactive = await all_of(AuroraProactiveMessage, AuroraProactiveMessage.contact_id == cid)
    appointments = list(
        await session.exec(
            sa_select(Appointment, col(Service.name), col(Resource.name))  # type: ignore[call-overload]
            .join(Service, col(Service.id) == col(Appointment.service_id))
            .join(Resource, col(Resource.id) == col(Appointment.resource_id))
            .where(
                col(Appointment.organization_id) == organization_id,
                col(Appointment.contact_id) == cid,
            )
            .order_by(col(Appointment.starts_at))
        )
    )
    pending = await all_of(AuroraPendingAction, _names_contact(AuroraPendingAction.payload, cid))
    audits = await _audit_rows(session, organization_id, cid, [p.id for p in pets])
    events = await all_of(WebhookEvent, WebhookEvent.contact_id == cid)
    sent = await all_of(WebhookDelivery, col(WebhookDelivery.event_id).in_([e.id for e in events]))
    by_conversation: dict[int | None, list[dict[str, Any]]] = {}
    for message in messages:
        by_conversation.setdefault(message.conversation_id, []).append(
            {
                "id": message.id,
                "direction": message.direction,
                "type": message.message_type,
                "content": message.content,
                "transcript": ((message.meta or {}).get("media") or {}).get("transcript"),
                "media": (message.meta or {}).get("media"),
                "status": message.status,
                "sent_by_ai": message.sent_by_ai,
                "from_staff": message.from_me and not message.sent_by_ai,
                "at": _moment(message.message_at),
                "deleted_at": _moment(message.deleted_at),
            }
        )
    return {
        "organization_id": organization_id,
        "contact": _row(contact),
        "identities": [{"kind": i.kind, "value": i.value} for i in identities],
        "pets": [_row(p) for p in pets],
        "appointments": [
            {**_row(a, "contact_id"), "service": service, "resource": resource}
            for a, service, resource in appointments
        ],
        "conversations": [
            {**_row(c, "contact_id"), "messages": by_conversation.get(c.id, [])}
            for c in conversations
        ],
        "ai_interactions": [_row(i) for i in interactions],
        "proactive_messages": [_row(p, "contact_id") for p in proactive],
        "pending_owner_actions": [_row(p) for p in pending],
        "audit_log": [_row(a) for a in audits],
        "webhook_events": [
            {
                "id": event_id(event.uid),
                "type": event.type,
                "created_at": _moment(event.created_at),
                "data": event.data,
                "deliveries": [
                    {
                        "endpoint_id": d.endpoint_id,
                        "status": d.status,
                        "attempts": d.attempts,
                        "delivered_at": _moment(d.delivered_at),
                    }
                    for d in sent
                    if d.event_id == event.id
                ],
            }
            for event in events
        ],
    }


def _names_contact(column: Any, contact_id: int) -> Any:
    """A JSON column that names the contact (`contact_id` at its top level)."""
    return cast(column["contact_id"], String) == str(contact_id)


async def _audit_rows(
    session: AsyncSession, organization_id: int, contact_id: int, pet_ids: list[int | None]
) -> list[AuditLog]:
    """Audit rows about the contact or its pets, or whose snapshots name the contact."""
    query = select(AuditLog).where(
        AuditLog.organization_id == organization_id,
        or_(
            (col(AuditLog.entity) == "contacts") & (col(AuditLog.entity_id) == contact_id),
            (col(AuditLog.entity) == "pets") & col(AuditLog.entity_id).in_(pet_ids),
            _names_contact(AuditLog.before, contact_id),
            _names_contact(AuditLog.after, contact_id),
        ),
    )
    return list(await session.exec(query.order_by(col(AuditLog.id))))


def _scrub(value: Any) -> Any:
    """`value` with every personal key's value erased, at any depth."""
    if isinstance(value, dict):
        return {k: ERASED if k in _PERSONAL_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


async def forget_contact(
    session: AsyncSession, organization_id: int, phone: str, *, actor: Actor, now: datetime
) -> dict[str, int] | None:
    """Erase the person at `phone` (see the module's docstring); how many rows of each
    kind were touched, or None when nothing is stored for that number. The caller commits."""
    contact = await find_by_phone(session, organization_id, phone)
    if contact is None:
        return None
    return await forget(session, contact, actor=actor, now=now)


def is_forgotten(contact: Contact) -> bool:
    return contact.phone is None and contact.name == pseudonym(
        contact.organization_id, contact.id or 0
    )


async def forget(
    session: AsyncSession, contact: Contact, *, actor: Actor, now: datetime
) -> dict[str, int]:
    """Erase `contact`'s personal data (see the module's docstring); the rows touched."""
    assert contact.id is not None
    cid, org = contact.id, contact.organization_id
    counts: dict[str, int] = {}

    async def run(name: str, statement: Any) -> None:
        result = await session.exec(statement)
        counts[name] = counts.get(name, 0) + int(result.rowcount)

    pets = list(
        await session.exec(select(Pet).where(Pet.organization_id == org, Pet.contact_id == cid))
    )
    for number, pet in enumerate(pets, start=1):
        pet.name, pet.notes = f"Pet {number}", None
    counts["pets"] = len(pets)
    conversation_ids = sa_select(col(Conversation.id)).where(
        col(Conversation.organization_id) == org, col(Conversation.contact_id) == cid
    )
    await run(
        "messages",
        sa_update(Message)
        .where(
            col(Message.organization_id) == org, col(Message.conversation_id).in_(conversation_ids)
        )
        .values(content="", chat_id=None, error=None, meta={"erased": True}),
    )
    await run(
        "ai_interactions",
        sa_update(AIInteraction)
        .where(
            col(AIInteraction.organization_id) == org,
            col(AIInteraction.conversation_id).in_(conversation_ids),
        )
        .values(error_message=None),
    )
    await run(
        "conversations",
        sa_update(Conversation)
        .where(col(Conversation.organization_id) == org, col(Conversation.contact_id) == cid)
        .values(escalation_reason=None),
    )
    await run(
        "appointments",
        sa_update(Appointment)
        .where(col(Appointment.organization_id) == org, col(Appointment.contact_id) == cid)
        .values(notes=None),
    )
    await run(
        "aurora_proactive_messages",
        sa_update(AuroraProactiveMessage)
        .where(
            col(AuroraProactiveMessage.organization_id) == org,
            col(AuroraProactiveMessage.contact_id) == cid,
        )
        .values(content=ERASED, error=None),
    )
    pending = await session.exec(
        select(AuroraPendingAction).where(
            AuroraPendingAction.organization_id == org,
            _names_contact(AuroraPendingAction.payload, cid),
        )
    )
    for action in pending:
        action.payload, action.preview = _scrub(action.payload), ERASED
        action.result = ERASED if action.result is not None else None
        if action.status == "pending":
            action.status = "cancelled"
        counts["aurora_pending_actions"] = counts.get("aurora_pending_actions", 0) + 1
    audits = await _audit_rows(session, org, cid, [p.id for p in pets])
    for audit in audits:
        audit.before = _scrub(audit.before) if audit.before is not None else None
        audit.after = _scrub(audit.after) if audit.after is not None else None
    counts["audit_log"] = len(audits)
    identities = await session.exec(
        select(ContactIdentity).where(
            ContactIdentity.organization_id == org, ContactIdentity.contact_id == cid
        )
    )
    removed = 0
    for identity in identities:
        await session.delete(identity)
        removed += 1
    counts["contact_identities"] = removed
    await run(
        "webhook_events",  # their deliveries go with them (ON DELETE CASCADE)
        sa_delete(WebhookEvent).where(
            col(WebhookEvent.organization_id) == org, col(WebhookEvent.contact_id) == cid
        ),
    )
    contact.name, contact.phone, contact.notes = pseudonym(org, cid), None, None
    counts["contacts"] = 1
    session.add(
        AuditLog(
            organization_id=org,
            actor_kind=actor.kind,
            actor_id=actor.id,
            action="forget_contact",
            entity="contacts",
            entity_id=cid,
            before=None,
            after={"pseudonym": contact.name, "rows": counts, "at": now.isoformat()},
        )
    )
    await session.flush()
    return counts


def erasure_preview(contact: Contact) -> str:
    label = contact.name or "o cliente"
    number = f" (+{contact.phone})" if contact.phone else ""
    return (
        f"apagar os dados pessoais de {label}{number} (LGPD): nome, telefone, mensagens e "
        "transcrições, nomes e anotações dos pets. Agendamentos e valores ficam, anônimos, "
        "e os números do mês não mudam. Não dá para desfazer."
    )


async def request_erasure(
    session: AsyncSession, organization_id: int, contact_id: int, now: datetime
) -> list[int]:
    """A customer asked, in the chat, to have their data erased: each active owner number
    gets a `forget_client` proposal (answered "sim" in their Aurora chat) and a message
    saying so. The ids of those messages (the scheduler sends them anyway). Asking again the
    same day sends nothing new. The caller commits."""
    contact = await session.get(Contact, contact_id)
    if contact is None or contact.organization_id != organization_id or is_forgotten(contact):
        return []
    owners = await session.exec(
        select(AuroraOwnerNumber).where(
            AuroraOwnerNumber.organization_id == organization_id,
            col(AuroraOwnerNumber.is_active),
        )
    )
    preview = erasure_preview(contact)
    key = f"erasure:{contact_id}:{now:%Y-%m-%d}"
    ids = []
    for number in owners:
        assert number.id is not None
        already = (
            await session.exec(
                select(AuroraProactiveMessage.id).where(
                    AuroraProactiveMessage.organization_id == organization_id,
                    AuroraProactiveMessage.dedupe_key == f"{key}:{number.id}",
                )
            )
        ).first()
        if already is not None:
            continue
        asked = await propose(
            session,
            Owner(organization_id, number.id),
            action="forget_client",
            payload={"contact_id": contact_id},
            preview=preview,
            now=now,
        )
        alert = AuroraProactiveMessage(
            organization_id=organization_id,
            owner_number_id=number.id,
            contact_id=contact_id,
            message_type="erasure_request",
            content=(
                "🔒 Um cliente pediu pelo WhatsApp para apagar os dados dele.\n"
                + asked.replace("Peça ao dono para responder", "Responda")
            ),
            scheduled_for=now,
            dedupe_key=f"{key}:{number.id}",
        )
        session.add(alert)
        await session.flush()
        ids.append(alert.id or 0)
    return ids


#: Rows erased per statement by `enforce_retention` (short transactions on a big backlog).
RETENTION_BATCH = 2_000
#: Media keys holding what a person said or sent in words: transcripts, extracted texts.
_TRANSCRIPT_KEYS = ("transcript", "speech_to_text", "text")
_MEDIA = Message.__table__.c.meta  # type: ignore[attr-defined]
_EVENT_DATA = WebhookEvent.__table__.c.data  # type: ignore[attr-defined]
#: A message's `meta` with its media (files' details, transcripts, captions) dropped and
#: `erased` set; the rest (who sent it, what kind of notice it was) is metadata and stays.
_ERASED_META: Any = literal_column(
    "(CASE WHEN jsonb_typeof(meta) = 'object' THEN meta - 'media' ELSE '{}'::jsonb END)"
    " || '{\"erased\": true}'::jsonb"
)


async def enforce_retention(session: AsyncSession, now: datetime) -> dict[str, int]:
    """Erase, for every organization with `[privacy]` set, the contents of messages older
    than `message_retention_days` and the transcripts and extracted texts of those older
    than `transcript_retention_days` (and the text `message.*` webhook events carry, by the
    first); the rows, their times, types and statuses stay, so counts and figures do not
    change. How many rows of each kind were erased. Commits each batch."""
    policies = (
        await session.exec(
            select(AISettings).where(
                or_(
                    col(AISettings.message_retention_days).is_not(None),
                    col(AISettings.transcript_retention_days).is_not(None),
                )
            )
        )
    ).all()
    done = {"contents": 0, "transcripts": 0, "webhook_texts": 0}
    for policy in policies:
        org = policy.organization_id
        if policy.message_retention_days is not None:
            cut = now - timedelta(days=policy.message_retention_days)
            done["contents"] += await _in_batches(
                session,
                sa_select(col(Message.id)).where(
                    col(Message.organization_id) == org,
                    col(Message.message_at) < cut,
                    ~_MEDIA.has_key("erased"),
                ),
                {"content": "", "meta": _ERASED_META},
            )
            result = await session.exec(
                sa_update(WebhookEvent)
                .where(
                    col(WebhookEvent.organization_id) == org,
                    col(WebhookEvent.created_at) < cut,
                    col(WebhookEvent.type).in_(("message.received", "message.sent")),
                    _EVENT_DATA["message"].has_key("text"),
                )
                .values(data=_EVENT_DATA.op("#-")(literal_column("'{message,text}'")))
            )
            await session.commit()
            done["webhook_texts"] += int(result.rowcount)
        if policy.transcript_retention_days is not None:
            cut = now - timedelta(days=policy.transcript_retention_days)
            media = _MEDIA["media"]
            done["transcripts"] += await _in_batches(
                session,
                sa_select(col(Message.id)).where(
                    col(Message.organization_id) == org,
                    col(Message.message_at) < cut,
                    or_(*(media.has_key(key) for key in _TRANSCRIPT_KEYS)),
                ),
                {
                    "meta": _MEDIA.op("#-")(literal_column("'{media,transcript}'"))
                    .op("#-")(literal_column("'{media,speech_to_text}'"))
                    .op("#-")(literal_column("'{media,text}'"))
                },
            )
    return done


async def _in_batches(session: AsyncSession, ids: Any, values: dict[str, Any]) -> int:
    total = 0
    while True:
        batch = ids.limit(RETENTION_BATCH).scalar_subquery()
        result = await session.exec(
            sa_update(Message).where(col(Message.id).in_(batch)).values(**values)
        )
        await session.commit()
        total += int(result.rowcount)
        if result.rowcount < RETENTION_BATCH:
            return total
