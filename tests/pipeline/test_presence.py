"""Behaving like a person: "digitando…" while the turn runs, the batch marked read after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from tests.pipeline.support import wait_until
from tests.pipeline.test_cloud import PHONE_NUMBER_ID, CloudStack, cloud_stack
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.testing.stack import INSTANCE, LocalStack, MovableClock

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

ANA = "5511977776666"
CHAT = f"{ANA}@s.whatsapp.net"
SEND = f"/message/sendText/{INSTANCE}"
READ = f"/chat/markMessageAsRead/{INSTANCE}"


def read_key(provider_id: str) -> dict[str, object]:
    return {"remoteJid": CHAT, "fromMe": False, "id": provider_id}


def test_presence_typing_while_the_turn_runs_and_the_batch_read_after(stack: LocalStack) -> None:
    stack.say(ANA, "Oi, tudo bem?", message_id="3EB0PRESENCE01")

    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
    stack.wait(lambda: stack.gateway.read_marks != [], what="the read receipt")
    stack.wait(lambda: stack.gateway.presences != [], what="the typing indicator")
    assert stack.gateway.presences[0] == {"number": CHAT, "presence": "composing", "delay": 8000}
    assert stack.gateway.read_marks == [read_key("3EB0PRESENCE01")]
    paths = [r.path for r in stack.gateway.requests]
    assert paths.index(SEND) < paths.index(READ)  # read when answered, not before


def test_presence_turned_off_in_the_organization_file_sends_neither(
    stack: LocalStack, engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE ai_settings SET read_receipts = false, typing_indicator = false"))
    stack.say(ANA, "Oi, sem recibo", message_id="3EB0PRESENCE02")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the first reply")
    with engine.begin() as conn:
        conn.execute(text("UPDATE ai_settings SET read_receipts = true, typing_indicator = true"))

    stack.say(ANA, "E agora?", message_id="3EB0PRESENCE03")

    stack.wait(lambda: stack.gateway.read_marks != [], what="the second batch's read receipt")
    assert stack.gateway.read_marks == [read_key("3EB0PRESENCE03")]
    paths = [r.path for r in stack.gateway.requests]
    first_reply = paths.index(SEND)
    assert paths[: first_reply + 1] == [SEND]  # nothing around the first turn


def test_presence_refused_by_the_gateway_never_holds_or_repeats_the_reply(
    stack: LocalStack,
) -> None:
    stack.gateway.courtesy_status = 500

    stack.say(ANA, "Oi, gateway ruim", message_id="3EB0PRESENCE04")

    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply despite the refused typing")
    assert stack.gateway.sent[0].text == "Recebi: Oi, gateway ruim"
    stack.wait(lambda: stack.gateway.read_marks != [], what="the (refused) read receipt")
    assert stack.gateway.presences != []  # asked for, refused, forgotten
    assert [r.path for r in stack.gateway.requests].count(SEND) == 1  # the reply went once


@pytest.fixture
def cloud(
    database_url: str, services: ServiceUrls, model: ScriptedChatModel, clock: MovableClock
) -> Iterator[CloudStack]:
    with cloud_stack(database_url, services.redis_url, model, clock) as stack:
        yield stack


def test_presence_cloud_typing_indicator_and_read_receipt(cloud: CloudStack) -> None:
    payload = cloud.gateway.incoming(PHONE_NUMBER_ID, ANA, "Oi pela Cloud API")
    wamid = payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"]

    assert cloud.deliver(payload).status_code == 200

    wait_until(lambda: len(cloud.gateway.sent) == 1, what="the reply")
    wait_until(lambda: len(cloud.gateway.read_marks) == 2, what="typing and the read receipt")
    marks = cloud.gateway.read_marks
    (typing,) = [body for body in marks if "typing_indicator" in body]
    (read,) = [body for body in marks if "typing_indicator" not in body]
    assert typing == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": wamid,
        "typing_indicator": {"type": "text"},
    }
    assert read == {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
