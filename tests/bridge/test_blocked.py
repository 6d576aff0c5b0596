"""What the bridge never asks to answer, through the real webhook routes on loopback: a blocked
contact's messages (stored, not drained, in no more statements than any message), and group
chats, broadcast lists, Status and newsletters on both gateways (acknowledged, not drained).

The bridge runs with a queue that records drain requests instead of Dramatiq: "no drain
enqueued" is then an exact check, and no worker process is needed.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from tests.conftest import EXAMPLE_ORG, zapvet
from tests.pipeline.support import Recorder, purge
from zapvet.bridge.app import build_app
from zapvet.bridge.cloud import signature
from zapvet.embedded import ServiceUrls
from zapvet.org import apply_spec, parse_spec
from zapvet.runtime import bridge_state_factory
from zapvet.serving import BackgroundServer
from zapvet.testing.gateways import FakeCloudAPI, FakeEvolutionAPI
from zapvet.testing.stack import INSTANCE, WEBHOOK_TOKEN

MARINA = "5511977776666"
LEGACY = "551177776666"  # the same account without the ninth digit
OWNER = "5511988887777"  # the example's owner number
PHONE_NUMBER_ID = "106540352242922"
APP_SECRET = "cloud-app-secret"


def cloud_org_text() -> str:
    """A second shop, "nuvem", on a Cloud API number (nothing is ever sent to it here)."""
    example = EXAMPLE_ORG.read_text().replace('slug = "petfeliz"', 'slug = "nuvem"')
    start, end = example.index("[[whatsapp]]"), example.index("[[owners]]")
    table = (
        '[[whatsapp]]\nprovider = "cloud"\n'
        f'phone_number_id = "{PHONE_NUMBER_ID}"\naccess_token = "t"\n'
        f'app_secret = "{APP_SECRET}"\nverify_token = "v"\napi_url = "http://127.0.0.1:9/v21.0"\n\n'
    )
    return example[:start] + table + example[end:]


@dataclass
class Bridge:
    origin: str
    queue: Recorder
    engine: Engine
    env: dict[str, str]
    evolution: FakeEvolutionAPI
    cloud: FakeCloudAPI

    def post(self, payload: dict[str, Any], path: str = "") -> httpx.Response:
        url = f"{self.origin}/webhooks/evolution/{INSTANCE}{path}"
        return httpx.post(url, json=payload, headers={"X-Webhook-Token": WEBHOOK_TOKEN})

    def say(self, phone: str, words: str, **options: Any) -> httpx.Response:
        response = self.post(self.evolution.incoming(INSTANCE, phone, words, **options))
        assert response.status_code == 200, response.text
        return response

    def deliver(self, payload: dict[str, Any]) -> httpx.Response:
        body = FakeCloudAPI.encode(payload)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature(body, APP_SECRET),
        }
        return httpx.post(f"{self.origin}/webhooks/cloud", content=body, headers=headers)

    def contact(self, *args: str) -> str:
        result = zapvet("contact", *args, env=self.env)
        assert result.exit_code == 0, result.output
        return result.stdout

    def rows(self, sql: str, **params: object) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]


@pytest.fixture
def bridge(database_url: str, services: ServiceUrls, engine: Engine) -> Iterator[Bridge]:
    with Session(engine) as session:
        for org_text in (EXAMPLE_ORG.read_text(), cloud_org_text()):
            apply_spec(session, parse_spec(org_text))
        session.commit()
    namespace = f"zt{uuid.uuid4().hex[:10]}"
    queue = Recorder()
    state = bridge_state_factory(
        database_url,
        services.redis_url,
        namespace=namespace,
        pool_size=2,
        queue=queue,  # type: ignore[arg-type]
    )
    server = BackgroundServer(build_app(state), name="zapvet-bridge-blocked")
    server.start()
    env = {"DATABASE_URL": database_url, "REDIS_URL": services.redis_url}
    try:
        yield Bridge(server.origin, queue, engine, env, FakeEvolutionAPI(), FakeCloudAPI())
    finally:
        server.stop()
        purge(services.redis_url, namespace)


def incoming(bridge: Bridge, phone_key: str) -> list[tuple[Any, ...]]:
    return bridge.rows(
        "SELECT m.content, m.status, m.processed_at IS NOT NULL, m.meta->>'blocked'"
        " FROM messages m JOIN contact_identities i ON i.contact_id ="
        " (SELECT contact_id FROM conversations c WHERE c.id = m.conversation_id)"
        " WHERE i.kind = 'phone' AND i.value = :key AND m.direction = 'incoming' ORDER BY m.id",
        key=phone_key,
    )


# -- blocked contacts -----------------------------------------------------------------------


def test_blocked_contact_message_is_stored_and_no_drain_enqueued(bridge: Bridge) -> None:
    bridge.say(MARINA, "Oi")
    assert len(bridge.queue.drains) == 1  # an ordinary customer is answered
    assert "their messages are kept" in bridge.contact(
        "block", "+55 11 97777-6666", "--org", "petfeliz"
    )

    for words, options in (
        ("Quero um banho", {"message_id": "BLOCKED1"}),
        ("pelo LID", {"lid": "203948571726354"}),  # the same contact, addressed by LID
    ):
        response = bridge.say(MARINA, words, **options)
        assert response.json()["stored"] == 1, words
    again = bridge.say(MARINA, "Quero um banho", message_id="BLOCKED1")  # redelivered
    assert again.json()["duplicates"] == 1
    bridge.say(LEGACY, "sem o nono dígito")  # the legacy spelling is the same contact
    assert len(bridge.queue.drains) == 1  # nothing more asked for
    assert incoming(bridge, "551177776666") == [
        # Still waiting when the block came (the recorder never drains): silenced too.
        ("Oi", "ignored", True, "true"),
        ("Quero um banho", "ignored", True, "true"),
        ("pelo LID", "ignored", True, "true"),
        ("sem o nono dígito", "ignored", True, "true"),
    ]
    assert bridge.rows("SELECT count(*) FROM contacts") == [(1,)]


def test_unblocked_contact_is_answered_again_from_the_next_message(bridge: Bridge) -> None:
    bridge.contact("block", MARINA, "--org", "petfeliz")
    bridge.say(MARINA, "ninguém responde?")
    assert bridge.queue.drains == []
    assert "unblocked" in bridge.contact("unblock", MARINA, "--org", "petfeliz")
    bridge.say(MARINA, "voltei")
    (conversation,) = bridge.rows("SELECT id FROM conversations")
    assert bridge.queue.drains == [conversation[0]]
    assert [row[:2] for row in incoming(bridge, "551177776666")] == [
        ("ninguém responde?", "ignored"),  # what came while blocked stays unanswered
        ("voltei", "pending"),
    ]


def test_a_number_blocked_before_it_ever_wrote_is_not_answered_on_either_gateway(
    bridge: Bridge,
) -> None:
    for slug in ("petfeliz", "nuvem"):
        assert "a new contact" in bridge.contact("block", "11 97777-6666", "--org", slug)
    bridge.say(MARINA, "primeira mensagem")
    response = bridge.deliver(bridge.cloud.incoming(PHONE_NUMBER_ID, MARINA, "pela Cloud API"))
    assert response.status_code == 200 and response.json()["stored"] == 1
    assert bridge.queue.drains == []
    statuses = bridge.rows("SELECT content, status FROM messages ORDER BY id")
    assert statuses == [("primeira mensagem", "ignored"), ("pela Cloud API", "ignored")]
    assert bridge.rows("SELECT count(*) FROM contacts") == [(2,)]  # one per shop


def test_blocking_in_one_shop_leaves_the_same_number_answered_in_another(bridge: Bridge) -> None:
    bridge.contact("block", MARINA, "--org", "nuvem")
    bridge.say(MARINA, "Oi")
    assert len(bridge.queue.drains) == 1


def test_an_owner_number_is_never_silenced_even_if_its_contact_was_blocked(
    bridge: Bridge,
) -> None:
    bridge.say(OWNER, "Aurora, quantos clientes hoje?")
    # Blocking an owner is refused everywhere; a row changed by hand must still not mute them.
    with bridge.engine.begin() as conn:
        conn.execute(text("UPDATE contacts SET status = 'blocked'"))
    bridge.say(OWNER, "e amanhã?")
    assert len(bridge.queue.drains) == 2


def test_a_blocked_contact_costs_the_webhook_no_extra_statement(
    bridge: Bridge, statements: list[str]
) -> None:
    bridge.say(MARINA, "Oi")  # creates the contact; the bridge's caches are warm after it
    statements.clear()
    bridge.say(MARINA, "de novo")
    answered = len(statements)
    bridge.contact("block", MARINA, "--org", "petfeliz")
    statements.clear()
    bridge.say(MARINA, "bloqueada")
    assert len(statements) == answered == 3, statements


# -- chats that are never answered ----------------------------------------------------------


def evolution_chat(bridge: Bridge, remote_jid: str, **extra: Any) -> dict[str, Any]:
    payload = bridge.evolution.incoming(INSTANCE, MARINA, "Bom dia a todos!")
    payload["data"]["key"]["remoteJid"] = remote_jid
    payload["data"]["key"].update(extra)
    return payload


EVOLUTION_CHATS = {
    "group": ("120363025246125486@g.us", {"participant": f"{MARINA}@s.whatsapp.net"}),
    "old-style group": (f"{MARINA}-1600000000@g.us", {"participant": f"{MARINA}@s.whatsapp.net"}),
    "broadcast list": ("1700000000@broadcast", {"participant": f"{MARINA}@s.whatsapp.net"}),
    "status": ("status@broadcast", {"participant": f"{MARINA}@s.whatsapp.net"}),
    "newsletter": ("120363170000000000@newsletter", {}),
}


@pytest.mark.parametrize("chat", list(EVOLUTION_CHATS))
def test_evolution_never_answers_groups_broadcasts_status_or_newsletters(
    bridge: Bridge, chat: str
) -> None:
    remote_jid, extra = EVOLUTION_CHATS[chat]
    payload = evolution_chat(bridge, remote_jid, **extra)
    reaction = copy.deepcopy(payload)
    reaction["data"]["key"]["id"] = "REACTION" + uuid.uuid4().hex[:8].upper()
    reaction["data"]["message"] = {"reactionMessage": {"key": {"id": "X"}, "text": "👍"}}
    reaction["data"]["messageType"] = "reactionMessage"
    for body in (payload, reaction):
        for path in ("", "/messages-upsert"):
            response = bridge.post(body, path)
            assert response.status_code == 200, (chat, path, response.text)
            assert response.json()["ignored"] == 1 and response.json()["stored"] == 0, chat
    assert bridge.queue.drains == []
    assert bridge.rows("SELECT count(*) FROM messages") == [(0,)]


def test_evolution_never_answers_a_message_flagged_as_broadcast(bridge: Bridge) -> None:
    """A broadcast-list message may reach us in the author's 1:1 chat with `broadcast` set."""
    payload = bridge.evolution.incoming(INSTANCE, MARINA, "Promoção para todos os contatos!")
    payload["data"]["broadcast"] = True
    response = bridge.post(payload)
    assert response.status_code == 200 and response.json()["ignored"] == 1
    assert bridge.queue.drains == []
    assert bridge.rows("SELECT count(*) FROM messages") == [(0,)]


def cloud_change(field: str, value: dict[str, Any]) -> dict[str, Any]:
    metadata = {"display_phone_number": "551133334444", "phone_number_id": PHONE_NUMBER_ID}
    change = {
        "field": field,
        "value": {"messaging_product": "whatsapp", "metadata": metadata, **value},
    }
    return {"object": "whatsapp_business_account", "entry": [{"id": "1022", "changes": [change]}]}


def cloud_message(**fields: Any) -> dict[str, Any]:
    return {"from": MARINA, "id": f"wamid.{uuid.uuid4().hex}", "timestamp": "1760026000", **fields}


CONTACTS = [{"profile": {"name": "Marina"}, "wa_id": MARINA}]
CLOUD_CASES = {
    "group message": cloud_change(
        "messages",
        {
            "contacts": CONTACTS,
            "messages": [
                cloud_message(group_id="120363025246125486", type="text", text={"body": "Oi grupo"})
            ],
        },
    ),
    "group reaction": cloud_change(
        "messages",
        {
            "contacts": CONTACTS,
            "messages": [
                cloud_message(
                    group_id="120363025246125486",
                    type="reaction",
                    reaction={"message_id": "wamid.x", "emoji": "👍"},
                )
            ],
        },
    ),
    "system": cloud_change(
        "messages",
        {
            "contacts": CONTACTS,
            "messages": [
                cloud_message(
                    type="system",
                    system={"body": "Marina changed her number", "type": "user_changed_number"},
                )
            ],
        },
    ),
    "statuses": cloud_change(
        "messages",
        {
            "statuses": [
                {"id": "wamid.ours", "status": "read", "timestamp": "1", "recipient_id": MARINA}
            ]
        },
    ),
    "group lifecycle": cloud_change("group_lifecycle_update", {"groups": [{"group_id": "1203"}]}),
}


@pytest.mark.parametrize("case", list(CLOUD_CASES))
def test_cloud_never_answers_groups_system_messages_or_statuses(bridge: Bridge, case: str) -> None:
    response = bridge.deliver(CLOUD_CASES[case])
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 0, case
    assert bridge.queue.drains == []
    assert bridge.rows("SELECT count(*) FROM messages") == [(0,)]
