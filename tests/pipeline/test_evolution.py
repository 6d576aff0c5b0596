"""Evolution webhooks "by events" (one path per event), own sends and group chats."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.pipeline.conftest import scalar
from zapvet.testing.stack import INSTANCE, LocalStack

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

ANA = "5511977776666"
BY_EVENTS = f"/webhooks/evolution/{INSTANCE}"


def own_send(message_id: str, text: str) -> dict[str, Any]:
    """What Evolution posts for a text sent through its API (our own reply)."""
    return {
        "event": "send.message",
        "instance": INSTANCE,
        "data": {
            "key": {"remoteJid": f"{ANA}@s.whatsapp.net", "fromMe": True, "id": message_id},
            "pushName": "Você",
            "status": "PENDING",
            "message": {"conversation": text},
            "messageType": "conversation",
            "messageTimestamp": int(time.time()),
            "source": "web",
        },
        "sender": "5511933334444@s.whatsapp.net",
        "apikey": None,
    }


def test_evolution_by_events_path_stores_and_answers(stack: LocalStack, engine: Engine) -> None:
    payload = stack.gateway.incoming(INSTANCE, ANA, "Oi, pelo caminho do evento")
    response = stack.post(payload, path=f"{BY_EVENTS}/messages-upsert")
    assert response.status_code == 200 and response.json()["stored"] == 1
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
    assert stack.gateway.sent[0].text == "Recebi: Oi, pelo caminho do evento"
    # The path names the event: a body without one is still understood.
    del payload["event"]
    payload["data"]["key"]["id"] = "3EB0BYEVENTS2"
    assert stack.post(payload, path=f"{BY_EVENTS}/messages-upsert").json()["stored"] == 1


def test_evolution_own_sends_are_ignored_and_never_pause_the_bot(
    stack: LocalStack, engine: Engine
) -> None:
    stack.say(ANA, "Oi")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the first reply")
    reply = stack.gateway.sent[0]
    for path in (f"{BY_EVENTS}/send-message", BY_EVENTS):
        response = stack.post(own_send(reply.provider_id, reply.text), path=path)
        assert response.status_code == 200, path
        assert response.json() == {
            "status": "ok",
            "stored": 0,
            "duplicates": 0,
            "ignored": 1,
            "updated": 0,
        }
    # A send we did not make through zapvet is ignored too: it is never a staff takeover.
    stack.post(own_send("3EB0NOTOURS0001", "Enviado pela API"), path=f"{BY_EVENTS}/send-message")
    assert scalar(engine, "SELECT count(*) FROM messages") == 2
    assert scalar(engine, "SELECT bot_paused_until FROM conversations") is None
    stack.say(ANA, "Ainda aí?")
    stack.wait(lambda: len(stack.gateway.sent) == 2, what="the bot to answer again")
    assert stack.gateway.sent[1].text == "Recebi: Ainda aí?"


def test_evolution_group_messages_are_ignored_and_not_stored(
    stack: LocalStack, engine: Engine
) -> None:
    payload = stack.gateway.incoming(INSTANCE, ANA, "Bom dia, grupo!")
    payload["data"]["key"]["remoteJid"] = "120363025246125486@g.us"
    payload["data"]["key"]["participant"] = f"{ANA}@s.whatsapp.net"
    for path in (f"{BY_EVENTS}/messages-upsert", BY_EVENTS):
        response = stack.post(payload, path=path)
        assert response.status_code == 200, path
        assert response.json()["ignored"] == 1 and response.json()["stored"] == 0, path
    for table in ("messages", "contacts", "conversations"):
        assert scalar(engine, f"SELECT count(*) FROM {table}") == 0, table
