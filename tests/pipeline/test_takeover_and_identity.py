"""Deletions, human takeover with an Aurora hand-back, and who is writing (ninth digit, LID)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from sqlalchemy import Engine

from tests.conftest import EXAMPLE_ORG
from tests.pipeline.conftest import rows, scalar
from tests.pipeline.support import purge
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.testing.stack import INSTANCE, LocalStack, MovableClock

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

ANA = "5511977776666"
OWNER = "5511988887777"  # the example shop's owner, Saraiva
CARLOS_LID = "203948571726354"
HANDED_BACK = "Feito: a conversa voltou para o atendimento automático."


def count(engine: Engine, sql: str, **params: object) -> int:
    value = scalar(engine, sql, **params)
    assert isinstance(value, int), value
    return value


def settled(engine: Engine) -> bool:
    """No customer message waits for a drain and no reply waits for the gateway."""
    return (
        count(
            engine, "SELECT count(*) FROM messages WHERE direction='incoming' AND status='pending'"
        )
        == 0
        and count(
            engine,
            "SELECT count(*) FROM messages WHERE direction='outgoing' AND status "
            "IN ('pending', 'sending')",
        )
        == 0
    )


def humans(messages: list[BaseMessage]) -> list[str]:
    return [str(m.content) for m in messages if isinstance(m, HumanMessage)]


def tools_offered(model: ScriptedChatModel) -> set[str]:
    return {tool["function"]["name"] for tool in model.calls[-1]["tools"]}


def lid_only(stack: LocalStack, phone: str, text: str, lid: str, **options: Any) -> dict[str, Any]:
    """A message addressed by LID alone: the phone is in no field of the key."""
    payload = stack.gateway.incoming(INSTANCE, phone, text, lid=lid, **options)
    del payload["data"]["key"]["remoteJidAlt"]
    return payload


# --- deletions ----------------------------------------------------------------------------


def delete_event(shape: str, target: str) -> dict[str, Any]:
    """A deletion of `target` in each form Evolution v2 posts one (research/whatsapp.md §4.2)."""
    key = {"remoteJid": f"{ANA}@s.whatsapp.net", "fromMe": False, "id": target}
    if shape == "delete-key":
        return {"event": "messages.delete", "instance": INSTANCE, "data": key}
    if shape == "delete-wrapped":
        return {"event": "messages.delete", "instance": INSTANCE, "data": {"key": key}}
    if shape == "revoke":
        data = {"key": key, "type": "REVOKE", "editedMessage": {}, "timestampMs": 1760025900000}
        return {"event": "messages.edited", "instance": INSTANCE, "data": data}
    assert shape == "update-deleted"
    data = {"keyId": target, "remoteJid": key["remoteJid"], "fromMe": False, "status": "DELETED"}
    return {"event": "messages.update", "instance": INSTANCE, "data": data}


@pytest.mark.parametrize("shape", ["delete-key", "delete-wrapped", "revoke", "update-deleted"])
def test_pipeline_a_deleted_message_is_marked_and_never_answered_again(
    stack: LocalStack, engine: Engine, model: ScriptedChatModel, shape: str
) -> None:
    stack.say(ANA, "Quero marcar banho pro Rex", message_id="3A00DEL1")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
    stack.wait(lambda: settled(engine), what="the reply to be settled")
    before = count(engine, "SELECT count(*) FROM messages")

    response = stack.post(delete_event(shape, "3A00DEL1"))
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "stored": 0,
        "duplicates": 0,
        "ignored": 0,
        "updated": 1,
    }
    ((content, status, deleted),) = rows(
        engine,
        "SELECT content, status, deleted_at IS NOT NULL FROM messages "
        "WHERE whatsapp_message_id = '3A00DEL1'",
    )
    assert (content, status, deleted) == ("Quero marcar banho pro Rex", "processed", True)
    assert count(engine, "SELECT count(*) FROM messages") == before  # no new row

    # The next message is the barrier: had the deletion asked for a turn, it would show here.
    stack.say(ANA, "Deixa pra lá, obrigada")
    stack.wait(lambda: len(stack.gateway.sent) == 2, what="the second reply")
    stack.wait(lambda: settled(engine), what="the second reply to be settled")
    assert [sent.text for sent in stack.gateway.sent] == [
        "Recebi: Quero marcar banho pro Rex",
        "Recebi: Deixa pra lá, obrigada",
    ]
    assert len(model.calls) == 2
    # The agent no longer sees the deleted text in the thread.
    assert "Quero marcar banho pro Rex" not in humans(model.calls[-1]["messages"])


def test_pipeline_a_message_deleted_before_its_turn_is_dropped_unanswered(
    stack: LocalStack, engine: Engine, model: ScriptedChatModel
) -> None:
    stack.stop_worker()  # the drain stays queued while the customer deletes the message
    stack.say(ANA, "Mensagem errada", message_id="3A00DEL2")
    assert stack.post(delete_event("delete-key", "3A00DEL2")).json()["updated"] == 1
    assert rows(
        engine,
        "SELECT status, deleted_at IS NOT NULL FROM messages WHERE whatsapp_message_id='3A00DEL2'",
    ) == [("ignored", True)]
    stack.say(ANA, "Oi, queria saber o preço do banho")
    stack.start_worker()
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the one reply")
    stack.wait(lambda: settled(engine), what="every message to be handled")
    assert [sent.text for sent in stack.gateway.sent] == [
        "Recebi: Oi, queria saber o preço do banho"
    ]
    assert len(model.calls) == 1
    assert "Mensagem errada" not in humans(model.calls[0]["messages"])


# --- human takeover and the owner's hand-back -----------------------------------------------


def test_pipeline_the_owner_hands_a_taken_over_conversation_back_to_the_bot(
    stack: LocalStack, engine: Engine, model: ScriptedChatModel
) -> None:
    stack.say(ANA, "Oi")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the first reply")
    # WhatsApp stamps whole seconds, the reply its own microsecond: a staff message typed in
    # the reply's second would sort before it, so the staff writes from the next second on.
    replied = scalar(engine, "SELECT message_at FROM messages WHERE direction='outgoing'")
    assert isinstance(replied, datetime)
    stack.wait(lambda: int(time.time()) > replied.timestamp(), what="the reply's second to end")
    stack.post(stack.gateway.incoming(INSTANCE, ANA, "Oi Ana, aqui é a Carla!", from_me=True))
    paused = scalar(engine, "SELECT bot_paused_until FROM conversations")
    assert paused is not None
    stack.say(ANA, "Oi Carla! Pode ser amanhã?")
    stack.wait(lambda: settled(engine), what="the paused message to be handled")
    assert len(stack.gateway.sent) == 1 and len(model.calls) == 1  # the bot stayed silent

    # The owner asks Aurora to hand Ana back; Aurora proposes, the owner's "sim" executes.
    model.add(
        AIMessage(
            "",
            tool_calls=[{"name": "hand_back_conversation", "args": {"client": "Ana"}, "id": None}],
        ),
        AIMessage("Posso devolver a conversa da Ana ao robô? Responda sim ou não."),
    )
    stack.say(OWNER, "Aurora, devolve a conversa da Ana pro robô", push_name="Saraiva")
    stack.wait(lambda: len(stack.gateway.sent) == 2, what="Aurora's proposal")
    proposal = stack.gateway.sent[1]
    assert proposal.chat_id == f"{OWNER}@s.whatsapp.net"
    assert proposal.text == "Posso devolver a conversa da Ana ao robô? Responda sim ou não."
    assert "hand_back_conversation" in tools_offered(model)
    (preview,) = [m for m in model.calls[-1]["messages"] if isinstance(m, ToolMessage)]
    assert str(preview.content).startswith("PRÉVIA (nada foi feito ainda)")
    assert rows(engine, "SELECT action, status FROM aurora_pending_actions") == [
        ("hand_back_conversation", "pending")
    ]
    # Proposed, not done: Ana is still with the staff.
    assert scalar(engine, "SELECT bot_paused_until FROM conversations c JOIN contacts k "
                  "ON k.id = c.contact_id WHERE k.phone = :p", p=ANA) == paused  # fmt: skip

    calls_before_yes = len(model.calls)
    stack.say(OWNER, "sim", push_name="Saraiva")
    stack.wait(lambda: len(stack.gateway.sent) == 3, what="the hand-back confirmation")
    assert stack.gateway.sent[2].text == HANDED_BACK
    assert len(model.calls) == calls_before_yes  # the "sim" never reached the model
    assert rows(engine, "SELECT action, status FROM aurora_pending_actions") == [
        ("hand_back_conversation", "confirmed")
    ]
    ana_conversation = (
        "SELECT c.status, c.bot_paused_until FROM conversations c "
        "JOIN contacts k ON k.id = c.contact_id WHERE k.phone = :p"
    )
    assert rows(engine, ana_conversation, p=ANA) == [("active", None)]
    ((action, actor, before, after),) = rows(
        engine, "SELECT action, actor_kind, before, after FROM audit_log"
    )
    assert (action, actor) == ("hand_back_conversation", "owner")
    assert before["bot_paused_until"] is not None and after["bot_paused_until"] is None  # type: ignore[index]

    stack.say(ANA, "Alô? Ainda tem horário amanhã?")
    stack.wait(lambda: len(stack.gateway.sent) == 4, what="the bot to answer Ana again")
    answer = stack.gateway.sent[3]
    assert answer.chat_id == f"{ANA}@s.whatsapp.net"
    # Ana's question to the staff went unanswered: the bot takes it up with the new one.
    assert answer.text == "Recebi: Oi Carla! Pode ser amanhã? | Alô? Ainda tem horário amanhã?"
    # The agent sees what the staff said while it was paused.
    assert "hand_back_conversation" not in tools_offered(model)
    thread = [str(m.content) for m in model.calls[-1]["messages"]]
    assert any("Oi Ana, aqui é a Carla!" in content for content in thread)


# --- contact matching -------------------------------------------------------------------


def contacts(engine: Engine) -> list[tuple[object, ...]]:
    return rows(engine, "SELECT id, phone FROM contacts ORDER BY id")


def identities(engine: Engine) -> set[tuple[object, ...]]:
    return set(rows(engine, "SELECT contact_id, kind, value FROM contact_identities"))


def test_pipeline_a_mobile_with_and_without_the_ninth_digit_is_one_contact(
    stack: LocalStack, engine: Engine, model: ScriptedChatModel
) -> None:
    stack.say("5511987654321", "Oi, é a Bia")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the first reply")
    stack.say("551187654321", "Mandei do celular antigo")
    stack.wait(lambda: len(stack.gateway.sent) == 2, what="the second reply")

    ((contact_id, phone),) = contacts(engine)
    assert phone == "5511987654321"
    assert identities(engine) == {(contact_id, "phone", "551187654321")}
    assert count(engine, "SELECT count(*) FROM conversations") == 1
    assert rows(
        engine,
        "SELECT DISTINCT conversation_id, chat_id FROM messages WHERE direction='incoming' "
        "ORDER BY chat_id",
    ) == [
        (scalar(engine, "SELECT id FROM conversations"), "551187654321@s.whatsapp.net"),
        (scalar(engine, "SELECT id FROM conversations"), "5511987654321@s.whatsapp.net"),
    ]
    # Each reply goes to the address the message came from; the second turn sees the first.
    assert [sent.chat_id for sent in stack.gateway.sent] == [
        "5511987654321@s.whatsapp.net",
        "551187654321@s.whatsapp.net",
    ]
    assert stack.gateway.sent[1].text == "Recebi: Mandei do celular antigo"
    assert "Oi, é a Bia" in humans(model.calls[-1]["messages"])


@pytest.mark.parametrize("phone_field", ["remoteJidAlt", "senderPn"])
def test_pipeline_a_lid_message_reaches_the_existing_phone_contact(
    stack: LocalStack, engine: Engine, model: ScriptedChatModel, phone_field: str
) -> None:
    carlos = "553188887777"  # a DDD 31 legacy account, as in research/whatsapp.md §4.5
    stack.say(carlos, "Oi, sou o Carlos")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the first reply")
    ((contact_id, _),) = contacts(engine)

    # Evolution 2.3.5+ puts the phone in remoteJidAlt, 6.7.x-based versions in senderPn.
    by_lid = lid_only(stack, carlos, "Pode ser às 15h?", CARLOS_LID)
    by_lid["data"]["key"][phone_field] = f"{carlos}@s.whatsapp.net"
    assert stack.post(by_lid).json()["stored"] == 1
    stack.wait(lambda: len(stack.gateway.sent) == 2, what="the reply to the LID message")
    assert [c[0] for c in contacts(engine)] == [contact_id]
    assert identities(engine) == {
        (contact_id, "phone", carlos),
        (contact_id, "lid", CARLOS_LID),
    }

    # Once learned, the LID alone is enough.
    assert stack.post(lid_only(stack, carlos, "Confirmado!", CARLOS_LID)).json()["stored"] == 1
    stack.wait(lambda: len(stack.gateway.sent) == 3, what="the reply to the bare LID message")
    assert [c[0] for c in contacts(engine)] == [contact_id]
    assert count(engine, "SELECT count(*) FROM conversations") == 1
    assert count(engine, "SELECT count(DISTINCT conversation_id) FROM messages") == 1
    assert [sent.chat_id for sent in stack.gateway.sent] == [
        f"{carlos}@s.whatsapp.net",
        f"{CARLOS_LID}@lid",
        f"{CARLOS_LID}@lid",
    ]
    assert stack.gateway.sent[2].text == "Recebi: Confirmado!"
    assert humans(model.calls[-1]["messages"])[:2] == ["Oi, sou o Carlos", "Pode ser às 15h?"]


@pytest.fixture
def owner_stack(
    request: pytest.FixtureRequest,
    database_url: str,
    services: ServiceUrls,
    model: ScriptedChatModel,
    clock: MovableClock,
) -> Iterator[LocalStack]:
    """The pipeline with the owner's phone written in the shop's file as `request.param`."""
    org_text = EXAMPLE_ORG.read_text().replace('"+55 11 98888-7777"', f'"{request.param}"')
    assert f'phone = "{request.param}"' in org_text
    local = LocalStack(
        database_url=database_url,
        redis_url=services.redis_url,
        model=model,
        org_text=org_text,
        debounce_seconds=0,
        clock=clock,
    )
    with local:
        yield local
    purge(services.redis_url, local.namespace)


@pytest.mark.parametrize(
    ("owner_stack", "writes_from"),
    [("+55 11 98888-7777", "551188887777"), ("+55 11 8888-7777", "5511988887777")],
    indirect=["owner_stack"],
)
def test_pipeline_the_owner_is_recognised_across_the_ninth_digit_and_by_lid(
    owner_stack: LocalStack, engine: Engine, model: ScriptedChatModel, writes_from: str
) -> None:
    stack = owner_stack
    stack.say(writes_from, "Aurora, como foi o dia?", push_name="Saraiva")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="Aurora's reply")
    assert "business_summary" in tools_offered(model)
    assert stack.gateway.sent[0].chat_id == f"{writes_from}@s.whatsapp.net"
    assert rows(engine, "SELECT ai_type FROM ai_interactions") == [("aurora",)]

    # The LID is learned from a message that also names the phone, then suffices alone.
    owner_lid = "118273645546372"
    with_phone = stack.gateway.incoming(
        INSTANCE, writes_from, "E amanhã?", lid=owner_lid, push_name="Saraiva"
    )
    stack.post(with_phone).raise_for_status()
    stack.wait(lambda: len(stack.gateway.sent) == 2, what="Aurora's second reply")
    assert scalar(engine, "SELECT lid FROM aurora_owner_numbers") == owner_lid
    stack.post(lid_only(stack, writes_from, "Obrigado", owner_lid)).raise_for_status()
    stack.wait(lambda: len(stack.gateway.sent) == 3, what="Aurora's third reply")
    assert "business_summary" in tools_offered(model)
    assert rows(engine, "SELECT ai_type FROM ai_interactions ORDER BY id") == [("aurora",)] * 3
    assert count(engine, "SELECT count(*) FROM contacts") == 1

    # A customer at the same time still gets the client attendant.
    stack.say(ANA, "Oi")
    stack.wait(lambda: len(stack.gateway.sent) == 4, what="the client's reply")
    assert "business_summary" not in tools_offered(model)
    assert rows(engine, "SELECT ai_type FROM ai_interactions ORDER BY id")[-1] == ("client",)
