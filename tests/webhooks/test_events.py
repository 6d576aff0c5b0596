"""Every change that has a webhook event writes it, from the code path that makes the change:
the customer's tools, the owner's confirmed commands, the bridge and the outbox's send."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from tests.conftest import NOW, start_conversation
from tests.pipeline.conftest import echo
from tests.pipeline.support import Recorder
from tests.pipeline.test_drain_rounds import text_from
from tests.tools.test_client_tools import TOMORROW, bare_tool_graph, call, succeed
from tests.webhooks.conftest import apply_text, with_webhook
from zapvet.bridge.events import Inbound, Sender
from zapvet.bridge.ingest import ingest
from zapvet.commands.confirmation import resolve
from zapvet.commands.proposals import Owner
from zapvet.graphs.client.graph import OPTED_OUT, build_graph
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import (
    AuroraOwnerNumber,
    AuroraPendingAction,
    ContactIdentity,
    Conversation,
    Organization,
    Service,
    WhatsAppInstance,
    outgoing_message,
)
from zapvet.queue.drain import Outcome, drain_conversation
from zapvet.queue.outbox import Sent, send_outgoing
from zapvet.queue.resources import Resources, build_resources
from zapvet.testing.gateways import FakeEvolutionAPI
from zapvet.testing.stack import API_KEY, INSTANCE
from zapvet.tools.context import ClientContext
from zapvet.tools.deps import ToolDeps

pytestmark = pytest.mark.anyio

#: Nothing listens there: events are only written here, never delivered.
URL = "http://127.0.0.1:9/zapvet"
MARINA = "5511977776666"
WITH_TEXT = "webhook_message_text = true"


def shop(session: Session, events: list[str] | None = None, *, texts: bool = False) -> Organization:
    """The example shop with one endpoint taking `events` (all of them by default)."""
    spec = with_webhook(URL, events)
    if texts:  # the example file says false
        spec = spec.replace("webhook_message_text = false", WITH_TEXT, 1)
    return apply_text(session, spec)


def emitted(session: Session) -> list[dict[str, Any]]:
    """The events written so far, each checked to have its one delivery."""
    rows = session.execute(
        text(
            "SELECT v.type, v.resource, v.contact_id, v.data, count(d.id) AS deliveries"
            "  FROM webhook_events v LEFT JOIN webhook_deliveries d ON d.event_id = v.id"
            " GROUP BY v.id ORDER BY v.id"
        )
    ).mappings()
    found = [dict(row) for row in rows]
    assert all(row.pop("deliveries") == 1 for row in found), found
    return found


def types(session: Session) -> list[str]:
    return [row["type"] for row in emitted(session)]


@pytest.fixture
def customer(session: Session) -> ClientContext:
    return start_conversation(session, shop(session), MARINA)


# -- the customer's tools -------------------------------------------------------------------


async def test_events_of_the_customer_tools_pet_booking_moving_and_cancelling(
    deps: ToolDeps, customer: ClientContext, session: Session
) -> None:
    pet = await succeed(deps, customer, "register_pet", name="Rex", species="cachorro")
    await succeed(deps, customer, "register_pet", name="rex", species="cão", age_years=3)
    booked = await succeed(
        deps, customer, "book_appointment", pet_name="Rex", service_type="consulta",
        preferred_date=TOMORROW, preferred_time="10:00",
    )  # fmt: skip
    number = booked["appointment_id"]
    await succeed(
        deps, customer, "reschedule_appointment",
        appointment_id=number, new_date=TOMORROW, new_time="15:00",
    )  # fmt: skip
    await succeed(deps, customer, "cancel_appointment", appointment_id=number)

    created, *moves = emitted(session)
    assert created["type"] == "pet.created"  # once: completing Rex's record is no new pet
    assert created["resource"] == f"contact:{customer.contact_id}"
    assert created["contact_id"] == customer.contact_id
    assert created["data"]["pet"]["id"] == pet["pet_id"]
    assert created["data"]["pet"]["species"] == "cachorro"
    assert created["data"]["pet"]["contact"]["phone"] == f"+{MARINA}"
    assert [m["type"] for m in moves] == [
        "appointment.created",
        "appointment.rescheduled",
        "appointment.cancelled",
    ]
    assert {m["resource"] for m in moves} == {f"appointment:{number}"}
    assert {m["contact_id"] for m in moves} == {customer.contact_id}
    booking, moved, cancelled = (m["data"]["appointment"] for m in moves)
    # 10:00 and 15:00 in São Paulo (UTC-3).
    assert booking["starts_at"] == "2026-11-26T13:00:00Z" and booking["status"] == "scheduled"
    assert booking["source"] == "client_ai" and booking["pet"]["name"] == "Rex"
    assert booking["service"]["name"] == "Consulta Veterinária Geral"
    assert moved["starts_at"] == "2026-11-26T18:00:00Z"
    previous = moves[1]["data"]["previous"]
    assert previous["starts_at"] == "2026-11-26T13:00:00Z"
    assert previous["ends_at"] == booking["ends_at"]
    assert previous["resource_id"] == booking["resource"]["id"]
    assert cancelled["status"] == "cancelled"


async def test_booking_the_same_start_again_writes_no_second_event(
    deps: ToolDeps, customer: ClientContext, session: Session
) -> None:
    await succeed(deps, customer, "register_pet", name="Rex", species="cachorro")
    for _ in range(2):  # the model repeating itself: the booking is idempotent, and so is this
        await succeed(
            deps, customer, "book_appointment", pet_name="Rex", service_type="consulta",
            preferred_date=TOMORROW, preferred_time="10:00",
        )  # fmt: skip

    assert types(session) == ["pet.created", "appointment.created"]


async def test_escalate_to_human_tool_writes_conversation_escalated_once(
    deps: ToolDeps, customer: ClientContext, session: Session
) -> None:
    for reason in ("cachorro vomitando sangue", "de novo"):
        request = AIMessage(
            "", tool_calls=[{**call("escalate_to_human", reason=reason), "id": "c1"}]
        )
        await bare_tool_graph(deps).ainvoke({"messages": [request]}, context=customer)

    (escalated,) = emitted(session)
    assert escalated["type"] == "conversation.escalated"
    assert escalated["resource"] == f"conversation:{customer.conversation_id}"
    assert escalated["contact_id"] == customer.contact_id
    conversation = escalated["data"]["conversation"]
    assert conversation["status"] == "escalated"
    assert conversation["escalation_reason"] == "cachorro vomitando sangue"
    assert conversation["escalated_at"] == "2026-11-25T17:00:00Z"


async def test_opting_out_and_back_in_writes_contact_updated_each_time(
    deps: ToolDeps, customer: ClientContext, session: Session
) -> None:
    graph = build_graph(ScriptedChatModel(script=[]), deps)
    out = [HumanMessage("Não quero mais receber mensagens")]
    for history in (out, out, [*out, AIMessage(OPTED_OUT), HumanMessage("voltar a receber")]):
        await run_turn(graph, customer, history)

    rows = emitted(session)  # the second "stop" changed nothing: no event
    assert [(row["type"], row["data"]["changes"]) for row in rows] == [
        ("contact.updated", ["opted_out_at"]),
        ("contact.updated", ["opted_out_at"]),
    ]
    assert {row["resource"] for row in rows} == {f"contact:{customer.contact_id}"}


# -- the owner's commands, after the "sim" --------------------------------------------------


@pytest.fixture
def owner(session: Session, customer: ClientContext) -> Owner:
    number = session.exec(select(AuroraOwnerNumber)).one()
    assert number.id is not None
    return Owner(customer.organization_id, number.id)


async def confirm(
    deps: ToolDeps, session: Session, owner: Owner, action: str, **payload: Any
) -> str:
    """Propose `action` as Aurora does, then answer "sim" the way the owner's turn does."""
    session.add(
        AuroraPendingAction(
            organization_id=owner.organization_id,
            owner_number_id=owner.owner_number_id,
            action=action,
            payload=payload,
            preview=action,
            expires_at=NOW + timedelta(minutes=10),
        )
    )
    session.commit()
    async with deps.sessions() as s, s.begin():
        answer = await resolve(s, owner, "yes", NOW)
    assert answer is not None and answer.startswith("Feito"), answer
    return answer


async def test_events_of_the_owner_commands_create_move_cancel_and_mark(
    deps: ToolDeps, customer: ClientContext, owner: Owner, session: Session
) -> None:
    consulta = session.exec(select(Service).where(col(Service.name).startswith("Consulta"))).one()
    for hour in (10, 11, 14):
        await confirm(
            deps, session, owner, "create_appointment", service_id=consulta.id,
            contact_id=customer.contact_id, start=f"{TOMORROW}T{hour}:00:00-03:00",
        )  # fmt: skip
    first, second, third = (int(row["resource"].split(":")[1]) for row in emitted(session))
    await confirm(
        deps, session, owner, "reschedule_appointment",
        appointment_id=first, start=f"{TOMORROW}T16:00:00-03:00",
    )  # fmt: skip
    await confirm(deps, session, owner, "cancel_appointment", appointment_id=first)
    await confirm(
        deps, session, owner, "mark_appointment", appointment_id=second, status="completed"
    )
    await confirm(deps, session, owner, "mark_appointment", appointment_id=third, status="no_show")

    rows = emitted(session)
    assert [(row["type"], row["resource"]) for row in rows] == [
        ("appointment.created", f"appointment:{first}"),
        ("appointment.created", f"appointment:{second}"),
        ("appointment.created", f"appointment:{third}"),
        ("appointment.rescheduled", f"appointment:{first}"),
        ("appointment.cancelled", f"appointment:{first}"),
        ("appointment.completed", f"appointment:{second}"),
        ("appointment.no_show", f"appointment:{third}"),
    ]
    assert {row["contact_id"] for row in rows} == {customer.contact_id}
    assert rows[0]["data"]["appointment"]["source"] == "aurora"
    assert rows[0]["data"]["appointment"]["pet"] is None
    assert rows[3]["data"]["previous"]["starts_at"] == "2026-11-26T13:00:00Z"
    assert rows[3]["data"]["appointment"]["starts_at"] == "2026-11-26T19:00:00Z"
    statuses = [row["data"]["appointment"]["status"] for row in rows[4:]]
    assert statuses == ["cancelled", "completed", "no_show"]


async def test_events_of_the_owner_commands_update_contact_and_hand_back(
    deps: ToolDeps, customer: ClientContext, owner: Owner, session: Session
) -> None:
    await confirm(
        deps, session, owner, "update_contact",
        contact_id=customer.contact_id, changes={"name": "Marina Souza", "notes": None},
    )  # fmt: skip
    request = AIMessage(
        "", tool_calls=[{**call("escalate_to_human", reason="reclamação"), "id": "c1"}]
    )
    await bare_tool_graph(deps).ainvoke({"messages": [request]}, context=customer)
    await confirm(
        deps, session, owner, "hand_back_conversation", conversation_id=customer.conversation_id
    )

    updated, escalated, handed_back = emitted(session)
    assert updated["type"] == "contact.updated"
    assert updated["resource"] == f"contact:{customer.contact_id}"
    assert updated["data"]["changes"] == ["name"]  # the notes were empty already
    assert updated["data"]["contact"]["name"] == "Marina Souza"
    assert escalated["type"] == "conversation.escalated"
    assert handed_back["type"] == "conversation.handed_back"
    assert handed_back["resource"] == f"conversation:{customer.conversation_id}"
    assert handed_back["contact_id"] == customer.contact_id
    assert handed_back["data"]["conversation"]["status"] == "active"


async def test_blocking_a_number_never_seen_writes_contact_created_and_unblocking_updated(
    deps: ToolDeps, owner: Owner, session: Session
) -> None:
    stranger = "5511955554444"
    await confirm(deps, session, owner, "block_contact", phone=stranger)
    await confirm(deps, session, owner, "unblock_contact", phone=stranger)

    created, updated = emitted(session)
    assert created["type"] == "contact.created"
    assert created["data"]["contact"]["status"] == "blocked"
    assert created["data"]["contact"]["phone"] == f"+{stranger}"
    assert updated["type"] == "contact.updated" and updated["data"]["changes"] == ["status"]
    assert updated["data"]["contact"]["status"] == "active"
    assert created["contact_id"] == updated["contact_id"] is not None


# -- the bridge -----------------------------------------------------------------------------


def inbound(provider_id: str, words: str, *, phone: str = MARINA, staff: bool = False) -> Inbound:
    return Inbound(
        provider_id=provider_id,
        chat_id=f"{phone}@s.whatsapp.net",
        sender=Sender(phone=phone, name=None if staff else "Marina"),
        from_me=staff,
        sent_at=NOW,
        kind="text",
        text=words,
    )


async def webhook(deps: ToolDeps, session: Session, *events: Inbound) -> int:
    instance = session.exec(select(WhatsAppInstance)).one()
    async with deps.sessions() as s, s.begin():
        report = await ingest(s, instance, list(events), NOW)
    return report.stored


@pytest.mark.parametrize("texts", [False, True], ids=["without-text", "with-text"])
async def test_bridge_writes_contact_created_message_received_and_staff_message_sent(
    deps: ToolDeps, session: Session, texts: bool
) -> None:
    shop(session, texts=texts)
    stored = await webhook(
        deps, session,
        inbound("wamid.1", "Oi, quero marcar um banho"),
        inbound("wamid.2", "é o Rex"),
        inbound("wamid.3", "Oi Marina, aqui é a Carla", staff=True),
    )  # fmt: skip
    assert stored == 3

    created, first, second, staff = emitted(session)
    contact_id = created["contact_id"]
    assert created["type"] == "contact.created"  # once: the second message finds her
    assert created["resource"] == f"contact:{contact_id}"
    assert created["data"]["contact"]["name"] == "Marina"
    assert created["data"]["contact"]["phone"] == f"+{MARINA}"
    assert [first["type"], second["type"], staff["type"]] == [
        "message.received",
        "message.received",
        "message.sent",
    ]
    resources = {row["resource"] for row in (first, second, staff)}
    assert len(resources) == 1 and resources.pop().startswith("conversation:")
    assert {row["contact_id"] for row in (first, second, staff)} == {contact_id}
    message = first["data"]["message"]
    assert message["direction"] == "incoming" and message["by"] == "contact"
    assert message["whatsapp_message_id"] == "wamid.1"
    assert first["data"]["message"]["contact"]["id"] == contact_id
    assert staff["data"]["message"]["by"] == "staff"
    assert staff["data"]["message"]["whatsapp_message_id"] == "wamid.3"
    if texts:
        assert message["text"] == "Oi, quero marcar um banho"
        assert staff["data"]["message"]["text"] == "Oi Marina, aqui é a Carla"
    else:
        assert "text" not in message and "text" not in staff["data"]["message"]


async def test_bridge_writes_contact_updated_when_a_later_message_brings_the_name(
    deps: ToolDeps, session: Session
) -> None:
    shop(session, ["contact.created", "contact.updated"])
    nameless = inbound("wamid.n1", "Oi")
    await webhook(deps, session, replace(nameless, sender=Sender(phone=MARINA)))
    await webhook(deps, session, inbound("wamid.n2", "sou a Marina"))
    await webhook(deps, session, inbound("wamid.n3", "tudo bem?"))  # nothing new: no event

    created, updated = emitted(session)
    assert created["type"] == "contact.created" and created["data"]["contact"]["name"] is None
    assert updated["type"] == "contact.updated"
    assert updated["contact_id"] == created["contact_id"]
    assert updated["data"]["changes"] == ["name"]
    assert updated["data"]["contact"]["name"] == "Marina"


async def test_bridge_writes_no_event_for_an_owner_talking_to_aurora(
    deps: ToolDeps, session: Session
) -> None:
    shop(session, ["message.received"])
    number = session.exec(select(AuroraOwnerNumber)).one()

    assert await webhook(deps, session, inbound("wamid.o", "quanto faturei?", phone=number.phone))
    assert emitted(session) == []


async def test_nothing_is_written_nor_asked_when_no_endpoint_listens(
    deps: ToolDeps, session: Session, statements: list[str]
) -> None:
    org = shop(session, ["appointment.no_show"])
    customer = start_conversation(session, org, "5511966665555")
    await webhook(deps, session, inbound("wamid.q1", "Oi"), inbound("wamid.q2", "s", staff=True))
    await succeed(deps, customer, "register_pet", name="Rex", species="cachorro")
    await succeed(
        deps, customer, "book_appointment", pet_name="Rex", service_type="consulta",
        preferred_date=TOMORROW, preferred_time="10:00",
    )  # fmt: skip

    assert emitted(session) == []
    bridge = [s for s in statements if "webhook_events" in s and "appointments" not in s]
    # The bridge knows from its cached configuration: not one statement for its events.
    assert not [s for s in bridge if "FROM messages m" in s or "FROM contacts c WHERE" in s]


# -- the outbox -----------------------------------------------------------------------------


@pytest.fixture
def gateway(engine: Engine) -> Iterator[FakeEvolutionAPI]:
    with FakeEvolutionAPI(api_key=API_KEY, instances=[INSTANCE]) as fake:
        yield fake


@pytest.fixture
async def worker(database_url: str) -> AsyncIterator[Resources]:
    res = build_resources(database_url, ScriptedChatModel, pool_size=2, clock=lambda: NOW)
    yield res
    await res.close()


def ai_reply(
    session: Session,
    engine: Engine,
    gateway: FakeEvolutionAPI,
    chat: ClientContext,
    phone: str,
    text_: str,
) -> int:
    """An AI reply to `chat` in the outbox, through the fake gateway; its id (written, not sent)."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE whatsapp_instances SET api_url = :url"), {"url": gateway.base_url}
        )
    instance = session.exec(select(WhatsAppInstance)).one()
    reply = outgoing_message(
        organization_id=chat.organization_id,
        conversation_id=chat.conversation_id,
        instance_id=instance.id,
        chat_id=f"{phone}@s.whatsapp.net",
        content=text_,
        now=NOW,
        sent_by_ai=True,
    )
    session.add(reply)
    session.commit()
    assert reply.id is not None
    return reply.id


@pytest.mark.parametrize("texts", [False, True], ids=["without-text", "with-text"])
async def test_settling_a_reply_the_gateway_took_writes_message_sent(
    session: Session,
    engine: Engine,
    gateway: FakeEvolutionAPI,
    worker: Resources,
    texts: bool,
) -> None:
    org = shop(session, ["message.sent"], texts=texts)
    customer = start_conversation(session, org, MARINA)
    reply = ai_reply(
        session, engine, gateway, customer, MARINA, "Oi Marina! Temos horário amanhã às 10:00."
    )
    assert emitted(session) == []  # written, not yet sent

    assert await send_outgoing(worker, reply, last_attempt=True) == Sent.SENT

    (sent,) = emitted(session)
    assert sent["type"] == "message.sent"
    assert sent["resource"] == f"conversation:{customer.conversation_id}"
    assert sent["contact_id"] == customer.contact_id
    message = sent["data"]["message"]
    assert message["id"] == reply and message["by"] == "ai" and message["sent_by_ai"]
    assert message["whatsapp_message_id"] == gateway.sent[0].provider_id
    assert message.get("text") == ("Oi Marina! Temos horário amanhã às 10:00." if texts else None)


async def test_an_owners_chat_with_aurora_writes_no_message_events(
    session: Session, engine: Engine, gateway: FakeEvolutionAPI, worker: Resources
) -> None:
    org = shop(session, ["message.sent"], texts=True)
    number = session.exec(select(AuroraOwnerNumber)).one()
    owner = start_conversation(session, org, number.phone)
    session.add(
        ContactIdentity(
            organization_id=owner.organization_id,
            contact_id=owner.contact_id,
            kind="phone",
            value=number.phone_key,
        )
    )
    reply = ai_reply(session, engine, gateway, owner, number.phone, "Hoje: 12 atendimentos.")
    assert await send_outgoing(worker, reply, last_attempt=True) == Sent.SENT
    assert emitted(session) == []  # the owner's figures are not the shop's client traffic


# -- the drain ------------------------------------------------------------------------------


@pytest.fixture
async def drainer(database_url: str) -> AsyncIterator[Resources]:
    res = build_resources(database_url, lambda: ScriptedChatModel(responder=echo), pool_size=4)
    res.send_inline = False
    yield res
    await res.close()


async def test_the_first_turn_after_a_takeover_pause_ran_out_writes_handed_back(
    drainer: Resources, session: Session, customer: ClientContext
) -> None:
    org = session.get(Organization, customer.organization_id)
    conversation = session.get(Conversation, customer.conversation_id)
    assert org is not None and conversation is not None
    conversation.bot_paused_until = datetime.now(UTC) + timedelta(hours=1)
    session.commit()
    text_from(session, org, customer.conversation_id, "Oi, ainda tem horário?")
    assert await drain_conversation(drainer, Recorder(), customer.conversation_id) is (
        Outcome.PAUSED
    )
    assert emitted(session) == []  # staff still has it

    conversation.bot_paused_until = datetime.now(UTC) - timedelta(minutes=1)
    session.commit()
    text_from(session, org, customer.conversation_id, "Alguém aí?")
    assert await drain_conversation(drainer, Recorder(), customer.conversation_id) is (
        Outcome.ANSWERED
    )
    text_from(session, org, customer.conversation_id, "Obrigada!")
    await drain_conversation(drainer, Recorder(), customer.conversation_id)

    (handed_back,) = emitted(session)  # once: the pause is gone from the row
    assert handed_back["type"] == "conversation.handed_back"
    assert handed_back["resource"] == f"conversation:{customer.conversation_id}"
    assert handed_back["contact_id"] == customer.contact_id
    assert handed_back["data"]["conversation"]["status"] == "active"
    session.expire_all()
    assert session.get(Conversation, customer.conversation_id).bot_paused_until is None  # type: ignore[union-attr]
