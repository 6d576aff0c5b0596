"""Owner commands racing the webhooks: the owner's "send a message to a client" and the
client's own message opening the same conversation at once end in one conversation, and
both writes succeed, whichever transaction inserts first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import NOW
from zapvet.bridge.events import Inbound, Sender
from zapvet.bridge.identity import phone_key
from zapvet.bridge.ingest import ingest
from zapvet.commands.confirmation import resolve
from zapvet.commands.proposals import Owner
from zapvet.models import (
    AuroraOwnerNumber,
    AuroraPendingAction,
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    Organization,
    WhatsAppInstance,
)
from zapvet.tools.deps import ToolDeps

pytestmark = pytest.mark.anyio

PHONE = "5511977776666"
Side = Callable[[AsyncSession], Awaitable[object]]


async def until_blocked(deps: ToolDeps, task: asyncio.Task[object]) -> None:
    """Return once some transaction of this database waits on a lock (or `task` is over)."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with deps.sessions() as session:
        while not task.done():
            connection = await session.connection()
            blocked = (await connection.execute(waiting)).scalar_one()
            await session.rollback()  # pg_stat_activity is read once per transaction
            if blocked:
                return
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("first", ["webhook", "owner"])
async def test_send_message_and_a_webhook_open_one_conversation_at_once(
    session: Session, petfeliz: Organization, deps: ToolDeps, first: str
) -> None:
    assert petfeliz.id is not None
    org_id = petfeliz.id
    contact = Contact(organization_id=org_id, phone=PHONE, name="Marina")
    session.add(contact)
    session.flush()
    assert contact.id is not None
    session.add(
        ContactIdentity(
            organization_id=org_id, contact_id=contact.id, kind="phone", value=phone_key(PHONE)
        )
    )
    number = session.exec(select(AuroraOwnerNumber)).one()
    instance = session.exec(select(WhatsAppInstance)).one()
    assert number.id is not None
    session.add(
        AuroraPendingAction(
            organization_id=org_id,
            owner_number_id=number.id,
            action="send_message",
            payload={"contact_id": contact.id, "text": "Oi Marina, aqui é a loja"},
            preview="Enviar para Marina: Oi Marina, aqui é a loja",
            expires_at=NOW + timedelta(minutes=10),
        )
    )
    session.commit()
    owner = Owner(org_id, number.id)
    message = Inbound(
        provider_id="wamid.race",
        chat_id=f"{PHONE}@s.whatsapp.net",
        sender=Sender(phone=PHONE, name="Marina"),
        from_me=False,
        sent_at=NOW,
        kind="text",
        text="Oi, queria marcar um banho",
    )

    async def webhook(s: AsyncSession) -> object:
        return (await ingest(s, instance, [message], NOW)).stored

    async def owner_yes(s: AsyncSession) -> object:
        return await resolve(s, owner, "yes", NOW)

    sides: dict[str, Side] = {"webhook": webhook, "owner": owner_yes}
    second = "owner" if first == "webhook" else "webhook"
    inserted, release = asyncio.Event(), asyncio.Event()

    async def holding(side: Side) -> object:
        """Run `side`, then keep its transaction (and its new conversation) uncommitted."""
        async with deps.sessions() as s, s.begin():
            done = await side(s)
            inserted.set()
            await release.wait()
        return done

    async def straight(side: Side) -> object:
        async with deps.sessions() as s, s.begin():
            return await side(s)

    holder = asyncio.create_task(holding(sides[first]))
    await inserted.wait()
    racer = asyncio.create_task(straight(sides[second]))
    await until_blocked(deps, racer)
    release.set()
    results = {first: await holder, second: await racer}

    assert results == {
        "webhook": 1,
        "owner": "Feito: a mensagem foi colocada na fila de envio para o cliente.",
    }
    session.expire_all()
    (conversation,) = session.exec(
        select(Conversation).where(Conversation.contact_id == contact.id)
    ).all()
    messages = session.exec(
        select(Message.direction, Message.conversation_id).order_by(Message.direction)
    ).all()
    assert [tuple(row) for row in messages] == [
        ("incoming", conversation.id),
        ("outgoing", conversation.id),
    ]
