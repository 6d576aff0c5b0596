"""The message pipeline end to end: webhook → database → queue → worker → agent → gateway."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from tests.pipeline.conftest import rows, scalar
from zapvet.bridge.app import MAX_BODY_BYTES
from zapvet.testing.stack import LocalStack, MovableClock

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

ANA = "5511977776666"


def answered(engine: Engine) -> int:
    return int(
        scalar(engine, "SELECT count(*) FROM messages WHERE direction='outgoing' AND status='sent'")
        or 0
    )  # type: ignore[arg-type]


def test_pipeline_answers_a_message_once(stack: LocalStack, engine: Engine) -> None:
    response = stack.say(ANA, "Oi, tudo bem?")
    assert response.json() == {
        "status": "ok",
        "stored": 1,
        "duplicates": 0,
        "ignored": 0,
        "updated": 0,
    }
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
    (sent,) = stack.gateway.sent
    assert sent.chat_id == f"{ANA}@s.whatsapp.net" and sent.text == "Recebi: Oi, tudo bem?"
    stack.wait(lambda: answered(engine) == 1, what="the outbox row to be settled")
    ((status, provider_id, by_ai),) = rows(
        engine,
        "SELECT status, whatsapp_message_id, sent_by_ai FROM messages WHERE direction='outgoing'",
    )
    assert (status, provider_id, by_ai) == ("sent", sent.provider_id, True)
    assert rows(engine, "SELECT status FROM messages WHERE direction='incoming'") == [
        ("processed",)
    ]


def test_pipeline_the_same_webhook_three_times_gives_one_row_and_one_reply(
    stack: LocalStack, engine: Engine
) -> None:
    payload = stack.gateway.incoming("petfeliz", ANA, "Quero um banho", message_id="3EB0AAA1")
    results = [stack.post(payload).json() for _ in range(3)]
    assert [r["stored"] for r in results] == [1, 0, 0] and [r["duplicates"] for r in results] == [
        0,
        1,
        1,
    ]
    stack.wait(lambda: answered(engine) == 1, what="the reply")
    assert scalar(engine, "SELECT count(*) FROM messages WHERE direction='incoming'") == 1
    assert len(stack.gateway.sent) == 1


@pytest.mark.parametrize("debounce", [2])
def test_pipeline_a_burst_within_the_debounce_window_gets_one_answer(
    stack: LocalStack, engine: Engine
) -> None:
    for text in ("oi", "queria marcar banho", "pro Rex", "amanhã de manhã"):
        stack.say(ANA, text)
    stack.wait(lambda: answered(engine) == 1, what="the one reply")
    assert [s.text for s in stack.gateway.sent] == [
        "Recebi: oi | queria marcar banho | pro Rex | amanhã de manhã"
    ]


@pytest.mark.parametrize("debounce", [2])
def test_pipeline_processes_out_of_order_deliveries_in_timestamp_order(
    stack: LocalStack, engine: Engine
) -> None:
    base = datetime.now(UTC).replace(microsecond=0)
    stack.say(ANA, "segunda", timestamp=base + timedelta(seconds=5))
    stack.say(ANA, "primeira", timestamp=base)
    stack.wait(lambda: answered(engine) == 1, what="the reply")
    assert stack.gateway.sent[0].text == "Recebi: primeira | segunda"


def test_pipeline_fifty_conversations_of_three_messages_each(
    stack: LocalStack, engine: Engine
) -> None:
    phones = [f"55119800{index:05d}" for index in range(50)]

    def customer(phone: str) -> None:
        for step in ("m1", "m2", "m3"):
            stack.say(phone, f"{phone[-3:]}:{step}")

    threads = [threading.Thread(target=customer, args=(phone,)) for phone in phones]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stack.wait(
        lambda: (
            scalar(
                engine,
                "SELECT count(*) FROM messages WHERE direction='incoming' AND status='pending'",
            )
            == 0
            and scalar(
                engine,
                "SELECT count(*) FROM messages WHERE direction='outgoing' AND status <> 'sent'",
            )
            == 0
        ),
        timeout=120,
        what="every message to be answered",
    )
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM messages WHERE direction='incoming' AND status='processed'",
        )
        == 150
    )
    for phone in phones:
        seen = [
            part
            for sent in stack.gateway.sent
            if sent.chat_id.startswith(phone)
            for part in sent.text.removeprefix("Recebi: ").split(" | ")
        ]
        texts = [sent.text for sent in stack.gateway.sent if sent.chat_id.startswith(phone)]
        assert seen == [f"{phone[-3:]}:m1", f"{phone[-3:]}:m2", f"{phone[-3:]}:m3"], texts


def test_pipeline_retries_the_gateway_2_4_then_delivers_once(
    stack: LocalStack, engine: Engine
) -> None:
    stack.gateway.fail_next(500, times=2)
    stack.say(ANA, "Oi")
    stack.wait(lambda: answered(engine) == 1, timeout=60, what="delivery after two failures")
    assert len(stack.gateway.sent) == 1
    assert len([r for r in stack.gateway.requests if r.path.startswith("/message/sendText")]) == 3
    assert rows(engine, "SELECT attempts, error FROM messages WHERE direction='outgoing'") == [
        (3, None)
    ]


def test_pipeline_refuses_bad_input_without_writing(stack: LocalStack, engine: Engine) -> None:
    good = stack.gateway.incoming("petfeliz", ANA, "Oi")
    assert stack.post(good, token=None).status_code == 401
    assert stack.post(good, token="wrong").json()["error"] == "unauthorized"
    assert stack.post(good, path="/webhooks/evolution/outra").status_code == 404
    broken = stack.post(b"{not json")
    assert broken.status_code == 422 and broken.json()["error"] == "invalid_json"
    wrong_shape = stack.post({"event": "messages.upsert", "data": "nope"})
    assert wrong_shape.status_code == 422 and wrong_shape.json()["error"] == "invalid_payload"
    filler = b"x" * MAX_BODY_BYTES
    huge = stack.post(b'{"event": "messages.upsert", "data": "' + filler + b'"}')
    assert huge.status_code == 413 and huge.json()["error"] == "payload_too_large"
    for table in ("messages", "contacts", "conversations"):
        assert scalar(engine, f"SELECT count(*) FROM {table}") == 0, table


def test_pipeline_a_person_answering_from_the_phone_silences_the_bot(
    stack: LocalStack, engine: Engine, clock: MovableClock
) -> None:
    stack.say(ANA, "Oi")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the first reply")
    stack.post(stack.gateway.incoming("petfeliz", ANA, "Oi Ana, aqui é a Carla!", from_me=True))
    stack.say(ANA, "Oi Carla! Pode ser amanhã?")
    stack.wait(
        lambda: (
            scalar(
                engine,
                "SELECT count(*) FROM messages WHERE direction='incoming' AND status='pending'",
            )
            == 0
        ),
        what="the message to be handled",
    )
    assert len(stack.gateway.sent) == 1  # the bot stayed silent
    staff = rows(engine, "SELECT content, sent_by_ai FROM messages WHERE meta->>'by' = 'staff'")
    assert staff == [("Oi Ana, aqui é a Carla!", False)]

    clock.advance(timedelta(minutes=481))  # the example shop's takeover lasts 480 minutes
    stack.say(ANA, "Alô?", timestamp=clock())
    stack.wait(lambda: len(stack.gateway.sent) == 2, what="the bot to answer again")
    # The agent sees the whole thread, the staff's words included, and answers the new message.
    assert stack.gateway.sent[1].text.endswith("Alô?")


def test_pipeline_edits_deletes_and_reactions_never_ask_for_answers(
    stack: LocalStack, engine: Engine
) -> None:
    stack.say(ANA, "Oi", message_id="M1")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
    reaction = stack.gateway.incoming("petfeliz", ANA, "", message_id="R1")
    reaction["data"]["message"] = {"reactionMessage": {"key": {"id": "M1"}, "text": "❤️"}}
    reaction["data"]["messageType"] = "reactionMessage"
    assert stack.post(reaction).json()["stored"] == 1
    edit = {
        "event": "messages.edited",
        "instance": "petfeliz",
        "data": {
            "key": {"remoteJid": f"{ANA}@s.whatsapp.net", "fromMe": False, "id": "M1"},
            "type": "MESSAGE_EDIT",
            "editedMessage": {"conversation": "Oi!!"},
        },
    }
    assert stack.post(edit).json()["updated"] == 1
    assert scalar(engine, "SELECT content FROM messages WHERE whatsapp_message_id='M1'") == "Oi!!"
    assert scalar(engine, "SELECT count(*) FROM messages WHERE message_type='reaction'") == 1
    stack.say(ANA, "tchau", message_id="M2")
    stack.wait(lambda: len(stack.gateway.sent) == 2, what="the second reply")
    assert stack.gateway.sent[1].text == "Recebi: tchau"


@pytest.mark.parametrize("model", ["escalating"], indirect=True)
def test_pipeline_escalation_alerts_the_owner(stack: LocalStack, engine: Engine) -> None:
    stack.say(ANA, "Meu cachorro está vomitando sangue")
    stack.wait(lambda: len(stack.gateway.sent) == 2, what="the reply and the owner alert")
    by_chat = {sent.chat_id: sent.text for sent in stack.gateway.sent}
    assert by_chat[f"{ANA}@s.whatsapp.net"] == "Procure um veterinário já!"
    assert "vômito com sangue" in by_chat["5511988887777"]
    stack.wait(
        lambda: scalar(engine, "SELECT status FROM aurora_proactive_messages") == "sent",
        what="the alert to be recorded as sent",
    )
    assert (
        scalar(
            engine,
            "SELECT c.status FROM conversations c JOIN contacts k ON k.id = c.contact_id "
            "WHERE k.phone = :p",
            p=ANA,
        )
        == "escalated"
    )
