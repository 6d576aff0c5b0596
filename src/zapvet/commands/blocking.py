"""Blocking a contact: the bridge keeps storing their messages and never answers them.

A number is found the way the bridge finds it (its phone identity, under the key without
the ninth digit), or by the contact's stored phone for rows written before identities
existed; either way the phone identity is recorded, so the next webhook meets the blocked
contact instead of creating a fresh, answered one. Blocking a number never seen creates
the contact already blocked; blocking a contact also silences what they sent that is still
waiting for an answer. An active owner number of the organization is never blocked.
Every change writes an `audit_log` row in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import exc as sa_exc
from sqlmodel import col, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.bridge.identity import normalise_phone, phone_key, phone_variants
from zapvet.errors import OwnerNumberRefused as OwnerNumberRefused
from zapvet.models import (
    AuditLog,
    AuroraOwnerNumber,
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    blocked_marking,
)
from zapvet.models.contact import ContactStatus
from zapvet.webhooks.events import EventType, emit

ActorKind = Literal["owner", "cli"]


@dataclass(frozen=True)
class Actor:
    """Who asked: an owner number through Aurora, or the command line (no id)."""

    kind: ActorKind
    id: int | None = None


@dataclass(frozen=True)
class BlockResult:
    """What `set_blocked` did: `changed` False when the contact already was so."""

    contact: Contact | None
    changed: bool
    created: bool = False


def parse_phone(raw: str) -> str:
    """International digits for a typed number ("+55 11 98888-7777", "11 8888-7777").

    Raises:
        ValueError: not a plausible phone number.
    """
    return normalise_phone(raw)


async def find_by_phone(session: AsyncSession, org_id: int, phone: str) -> Contact | None:
    """The organization's contact for `phone` (international digits), locked for update."""
    key = phone_key(phone)
    by_identity = (
        select(Contact)
        .join(ContactIdentity, col(ContactIdentity.contact_id) == col(Contact.id))
        .where(
            ContactIdentity.organization_id == org_id,
            ContactIdentity.kind == "phone",
            ContactIdentity.value == key,
            Contact.organization_id == org_id,
        )
        .with_for_update(of=Contact)
    )
    found = (await session.exec(by_identity)).first()
    if found is not None:
        return found
    by_phone = (
        select(Contact)
        .where(
            Contact.organization_id == org_id,
            col(Contact.phone).in_(phone_variants(phone)),
        )
        .order_by(col(Contact.id))
        .with_for_update()
    )
    return (await session.exec(by_phone)).first()


async def is_owner(session: AsyncSession, org_id: int, contact: Contact | None, phone: str) -> bool:
    """Whether `phone` (or any identity of `contact`) is an active owner number of the org."""
    keys, lids, bsuids = {phone_key(phone)}, set[str](), set[str]()
    if contact is not None and contact.id is not None:
        if contact.phone:
            keys.add(phone_key(contact.phone))
        known = await session.exec(
            select(ContactIdentity).where(
                ContactIdentity.organization_id == org_id,
                ContactIdentity.contact_id == contact.id,
            )
        )
        for identity in known:
            {"phone": keys, "lid": lids, "bsuid": bsuids}[identity.kind].add(identity.value)
    clauses = [col(AuroraOwnerNumber.phone_key).in_(keys)]
    if lids:
        clauses.append(col(AuroraOwnerNumber.lid).in_(lids))
    if bsuids:
        clauses.append(col(AuroraOwnerNumber.bsuid).in_(bsuids))
    owner = await session.exec(
        select(AuroraOwnerNumber.id).where(
            AuroraOwnerNumber.organization_id == org_id,
            col(AuroraOwnerNumber.is_active),
            or_(*clauses),
        )
    )
    return owner.first() is not None


async def _ensure_identity(session: AsyncSession, org_id: int, contact_id: int, key: str) -> bool:
    """Record the phone identity unless some contact holds it; False if another one does."""
    held = (
        await session.exec(
            select(ContactIdentity.contact_id).where(
                ContactIdentity.organization_id == org_id,
                ContactIdentity.kind == "phone",
                ContactIdentity.value == key,
            )
        )
    ).first()
    if held is not None:
        return held == contact_id
    try:
        async with session.begin_nested():
            session.add(
                ContactIdentity(
                    organization_id=org_id, contact_id=contact_id, kind="phone", value=key
                )
            )
    except sa_exc.IntegrityError:
        return False  # a webhook recorded it meanwhile: look again
    return True


async def _silence_pending(
    session: AsyncSession, org_id: int, contact_id: int, now: datetime
) -> None:
    """What the contact sent that is still waiting is not answered either: marked like a
    blocked message. A drain already running on it finds its batch changed at commit and
    rolls its turn back (`queue.drain`'s still-pending check), so no reply goes out."""
    conversations = select(Conversation.id).where(
        Conversation.organization_id == org_id, Conversation.contact_id == contact_id
    )
    await session.exec(
        update(Message)
        .where(
            col(Message.organization_id) == org_id,
            col(Message.conversation_id).in_(conversations.scalar_subquery()),
            col(Message.direction) == "incoming",
            col(Message.status) == "pending",
        )
        .values(**blocked_marking(now))
    )


async def _audit(
    session: AsyncSession,
    actor: Actor,
    contact: Contact,
    before: dict[str, Any] | None,
    now: datetime,
) -> None:
    await session.flush()
    session.add(
        AuditLog(
            organization_id=contact.organization_id,
            actor_kind=actor.kind,
            actor_id=actor.id,
            action="block_contact" if contact.status == "blocked" else "unblock_contact",
            entity="contacts",
            entity_id=contact.id,
            before=before,
            after=contact.model_dump(mode="json"),
            created_at=now,
        )
    )


async def set_blocked(
    session: AsyncSession,
    org_id: int,
    phone: str,
    *,
    blocked: bool,
    actor: Actor,
    now: datetime,
) -> BlockResult:
    """Block or unblock the organization's contact at `phone` (international digits).

    Blocking an unknown number creates its contact, blocked; unblocking one changes nothing.

    Raises:
        OwnerNumberRefused: blocking an active owner number of the organization.
    """
    status: ContactStatus = "blocked" if blocked else "active"
    for _ in range(3):
        contact = await find_by_phone(session, org_id, phone)
        if blocked and await is_owner(session, org_id, contact, phone):
            raise OwnerNumberRefused(phone)
        if contact is None:
            if not blocked:
                return BlockResult(None, changed=False)
            try:
                async with session.begin_nested():
                    contact = Contact(organization_id=org_id, phone=phone, status="blocked")
                    session.add(contact)
                    await session.flush()
                    session.add(
                        ContactIdentity(
                            organization_id=org_id,
                            contact_id=contact.id or 0,
                            kind="phone",
                            value=phone_key(phone),
                        )
                    )
            except sa_exc.IntegrityError:
                continue  # the number's first message created the contact meanwhile
            await _audit(session, actor, contact, None, now)
            await _emit(session, "contact.created", contact, now)
            return BlockResult(contact, changed=True, created=True)
        if not await _ensure_identity(session, org_id, contact.id or 0, phone_key(phone)):
            continue
        if contact.status == status:
            return BlockResult(contact, changed=False)
        before = contact.model_dump(mode="json")
        contact.status = status
        contact.updated_at = now
        if blocked:
            await _silence_pending(session, org_id, contact.id or 0, now)
        await _audit(session, actor, contact, before, now)
        await _emit(session, "contact.updated", contact, now, extra={"changes": ["status"]})
        return BlockResult(contact, changed=True)
    raise RuntimeError("could not settle the contact's phone identity")


async def _emit(
    session: AsyncSession,
    event_type: EventType,
    contact: Contact,
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> None:
    await session.flush()  # the event's data is read by SQL: the change must be there first
    await emit(
        await session.connection(),
        event_type,
        organization_id=contact.organization_id,
        about=contact.id or 0,
        now=now,
        extra=extra,
    )
