"""Who is writing: contacts by any of their WhatsApp identities, owners, open conversations.

A contact keeps every identity WhatsApp has shown for them: the phone (stored under its
ninth-digit-free key, so both spellings match), the LID and the Cloud API BSUID. Owners
are recognised the same way. Creation is race-safe: two webhooks for the same new
customer at once end with one contact (the unique identity index decides).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exc as sa_exc
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.bridge.events import Sender
from zapvet.bridge.identity import phone_key
from zapvet.models import AuroraOwnerNumber, Contact, ContactIdentity, Conversation
from zapvet.models.contact import IdentityKind
from zapvet.webhooks.events import emit


def identities(sender: Sender) -> list[tuple[IdentityKind, str]]:
    keys: list[tuple[IdentityKind, str]] = []
    if sender.phone:
        keys.append(("phone", phone_key(sender.phone)))
    if sender.lid:
        keys.append(("lid", sender.lid))
    if sender.bsuid:
        keys.append(("bsuid", sender.bsuid))
    return keys


async def _known(
    session: AsyncSession, org_id: int, keys: list[tuple[IdentityKind, str]]
) -> list[ContactIdentity]:
    clauses = [
        (col(ContactIdentity.kind) == kind) & (col(ContactIdentity.value) == value)
        for kind, value in keys
    ]
    rows = await session.exec(
        select(ContactIdentity)
        .where(ContactIdentity.organization_id == org_id, or_(*clauses))
        .order_by(col(ContactIdentity.contact_id))
    )
    return list(rows)


async def contact_for(session: AsyncSession, org_id: int, sender: Sender, now: datetime) -> Contact:
    """The contact behind `sender`, created on first contact; learns new identities.

    Raises:
        ValueError: the sender carries no identity at all.
    """
    keys = identities(sender)
    if not keys:
        raise ValueError("a sender without phone, LID or BSUID")
    for _ in range(3):
        known = await _known(session, org_id, keys)
        contact = await session.get(Contact, known[0].contact_id) if known else None
        created = contact is None
        try:
            async with session.begin_nested():
                if contact is None:
                    contact = Contact(organization_id=org_id, phone=sender.phone, name=sender.name)
                    session.add(contact)
                    await session.flush()
                have = {(row.kind, row.value) for row in known}
                for kind, value in keys:
                    if (kind, value) not in have:
                        session.add(
                            ContactIdentity(
                                organization_id=org_id,
                                contact_id=contact.id or 0,
                                kind=kind,
                                value=value,
                            )
                        )
                await session.flush()
        except sa_exc.IntegrityError:
            continue  # another webhook created this identity first: look again
        if created:
            await emit(
                await session.connection(),
                "contact.created",
                organization_id=org_id,
                about=contact.id or 0,
                now=now,
            )
        contact.name = contact.name or sender.name
        contact.phone = contact.phone or sender.phone
        contact.last_contact_at = now
        return contact
    raise RuntimeError("could not settle the contact's identities")


async def owner_for(session: AsyncSession, org_id: int, sender: Sender) -> AuroraOwnerNumber | None:
    """The active owner number `sender` is, learning its LID/BSUID when matched by phone."""
    clauses = []
    if sender.phone:
        clauses.append(col(AuroraOwnerNumber.phone_key) == phone_key(sender.phone))
    if sender.lid:
        clauses.append(col(AuroraOwnerNumber.lid) == sender.lid)
    if sender.bsuid:
        clauses.append(col(AuroraOwnerNumber.bsuid) == sender.bsuid)
    if not clauses:
        return None
    owner = (
        await session.exec(
            select(AuroraOwnerNumber).where(
                AuroraOwnerNumber.organization_id == org_id,
                col(AuroraOwnerNumber.is_active),
                or_(*clauses),
            )
        )
    ).first()
    if owner is not None:
        owner.lid = owner.lid or sender.lid
        owner.bsuid = owner.bsuid or sender.bsuid
    return owner


async def open_conversation(
    session: AsyncSession, org_id: int, contact_id: int, now: datetime
) -> Conversation:
    """The contact's conversation that is not closed, opened now if there is none.

    The one way to open a conversation: a webhook and an owner's message to the same client
    may both find none and insert; the loser of the one-open-conversation index takes the
    winner's row.
    """
    for _ in range(3):
        found = (
            await session.exec(
                select(Conversation).where(
                    Conversation.organization_id == org_id,
                    Conversation.contact_id == contact_id,
                    Conversation.status != "closed",
                )
            )
        ).first()
        if found is not None:
            found.last_message_at = now
            return found
        try:
            async with session.begin_nested():
                created = Conversation(
                    organization_id=org_id, contact_id=contact_id, last_message_at=now
                )
                session.add(created)
                await session.flush()
            return created
        except sa_exc.IntegrityError:
            continue  # opened concurrently (a webhook, an owner's message): look again
    raise RuntimeError("could not open the conversation")
