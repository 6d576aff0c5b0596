"""WhatsApp Cloud API webhooks through the bridge: verification, signatures, replies, statuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import dramatiq
import httpx
import pytest
import redis.asyncio as aioredis
from langchain_core.language_models import BaseChatModel
from sqlalchemy import Engine
from sqlmodel import Session

from tests.conftest import EXAMPLE_ORG
from tests.pipeline.conftest import rows, scalar
from tests.pipeline.support import new_namespace, purge, wait_until
from zapvet import db
from zapvet.bridge.app import build_app
from zapvet.clock import Clock, system_clock
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.media.prepare import MediaSetup
from zapvet.org import apply_spec, parse_spec
from zapvet.queue.actors import ResourceHolder, declare
from zapvet.queue.broker import build_broker
from zapvet.queue.middleware import Lifecycle
from zapvet.queue.resources import build_resources
from zapvet.runtime import bridge_state_factory
from zapvet.serving import BackgroundServer
from zapvet.testing.gateways import FakeCloudAPI, RecordedRequest
from zapvet.testing.stack import MovableClock

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

PHONE_NUMBER_ID = "106540352242922"
ACCESS_TOKEN = "cloud-access-token"
APP_SECRET = "cloud-app-secret"
VERIFY_TOKEN = "cloud-verify-token"
ANA = "5511977776666"
BSUID = "BR.1502576394655843"


def cloud_org_text(api_url: str) -> str:
    """The example shop, with a Cloud API number in place of its Evolution instance."""
    example = EXAMPLE_ORG.read_text()
    start, end = example.index("[[whatsapp]]"), example.index("[[owners]]")
    table = "\n".join(
        [
            "[[whatsapp]]",
            'provider = "cloud"',
            f'phone_number_id = "{PHONE_NUMBER_ID}"',
            f'access_token = "{ACCESS_TOKEN}"',
            f'app_secret = "{APP_SECRET}"',
            f'verify_token = "{VERIFY_TOKEN}"',
            f'api_url = "{api_url}"',
            "",
            "",
        ]
    )
    return example[:start] + table + example[end:]


@dataclass
class CloudStack:
    """Bridge over HTTP, an in-process worker and a fake Graph API, for one Cloud number."""

    gateway: FakeCloudAPI
    bridge: BackgroundServer

    def post(self, body: bytes, *, signature: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        url = f"{self.bridge.origin}/webhooks/cloud"
        return httpx.post(url, content=body, headers=headers, timeout=30)

    def deliver(self, payload: dict[str, Any]) -> httpx.Response:
        """POST `payload` as Meta does: compact, ASCII-escaped, signed over those exact bytes."""
        body = FakeCloudAPI.encode(payload)
        return self.post(body, signature=FakeCloudAPI.sign(body, APP_SECRET))

    def verify(self, **params: str) -> httpx.Response:
        return httpx.get(f"{self.bridge.origin}/webhooks/cloud", params=params, timeout=30)


@contextmanager
def cloud_stack(
    database_url: str,
    redis_url: str,
    model: BaseChatModel,
    clock: Clock = system_clock,
    media: MediaSetup | None = None,
) -> Iterator[CloudStack]:
    """The example shop on a Cloud API number: bridge, in-process worker, fake Graph API."""
    namespace = new_namespace()
    with ExitStack() as teardown:
        teardown.callback(purge, redis_url, namespace)
        gateway = FakeCloudAPI(access_token=ACCESS_TOKEN, phone_number_ids=[PHONE_NUMBER_ID])
        gateway.start()
        teardown.callback(gateway.stop)
        spec = parse_spec(cloud_org_text(gateway.base_url))
        spec = spec.model_copy(update={"ai": spec.ai.model_copy(update={"debounce_seconds": 0})})
        engine = db.build_engine(database_url, pool_size=1)
        teardown.callback(engine.dispose)
        with Session(engine) as session:
            apply_spec(session, spec)
            session.commit()

        broker = build_broker(redis_url, namespace=namespace)
        holder = ResourceHolder(
            lambda: build_resources(
                database_url,
                lambda: model,
                pool_size=8,
                clock=clock,
                media=replace(
                    media or MediaSetup(),
                    redis=aioredis.Redis.from_url(redis_url),
                    namespace=namespace,
                ),
            )
        )
        broker.add_middleware(Lifecycle(holder.close))
        queue = declare(broker, holder.get)
        worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
        worker.start()
        teardown.callback(worker.stop)
        state = bridge_state_factory(
            database_url, redis_url, namespace=namespace, queue=queue, clock=clock
        )
        bridge = BackgroundServer(build_app(state), name="zapvet-bridge")
        bridge.start()
        teardown.callback(bridge.stop)
        yield CloudStack(gateway, bridge)


@pytest.fixture
def cloud(
    database_url: str, services: ServiceUrls, model: ScriptedChatModel, clock: MovableClock
) -> Iterator[CloudStack]:
    with cloud_stack(database_url, services.redis_url, model, clock) as stack:
        yield stack


def statuses(wamid: str, status: str, *, phone_number_id: str = PHONE_NUMBER_ID) -> dict[str, Any]:
    """A statuses-only webhook (no `messages` key), as Meta reports delivery and reading."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "551133334444", "phone_number_id": phone_number_id},
        "statuses": [
            {"id": wamid, "status": status, "timestamp": "1760026000", "recipient_id": ANA}
        ],
    }
    change = {"field": "messages", "value": value}
    return {"object": "whatsapp_business_account", "entry": [{"id": "1022", "changes": [change]}]}


def sends(gateway: FakeCloudAPI) -> list[RecordedRequest]:
    """The text messages posted (not the read receipts and typing indicators beside them)."""
    return [r for r in gateway.requests if isinstance(r.body, dict) and "text" in r.body]


def reply_status(engine: Engine) -> object:
    return scalar(engine, "SELECT status FROM messages WHERE direction='outgoing'")


def nothing_stored(engine: Engine) -> bool:
    return all(
        scalar(engine, f"SELECT count(*) FROM {table}") == 0
        for table in ("messages", "contacts", "conversations")
    )


def test_cloud_verification_answers_the_challenge_only_for_the_right_token(
    cloud: CloudStack,
) -> None:
    right = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201"}
    answered = cloud.verify(**right)
    assert answered.status_code == 200 and answered.text == "1158201"
    for wrong in (
        {**right, "hub.verify_token": "not-the-token"},
        {"hub.mode": "subscribe", "hub.challenge": "1158201"},
        {**right, "hub.mode": "unsubscribe"},
    ):
        refused = cloud.verify(**wrong)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden", wrong
        assert "1158201" not in refused.text


def test_cloud_a_signed_message_is_stored_and_answered_to_its_wa_id(
    cloud: CloudStack, engine: Engine
) -> None:
    # Non-ASCII on purpose: Meta escapes it, and the signature covers those exact bytes.
    response = cloud.deliver(cloud.gateway.incoming(PHONE_NUMBER_ID, ANA, "Olá! Tem horário?"))
    assert response.status_code == 200 and response.json()["stored"] == 1
    wait_until(lambda: reply_status(engine) == "sent", what="the reply to be sent")
    (sent,) = cloud.gateway.sent
    assert sent.chat_id == ANA and sent.text == "Recebi: Olá! Tem horário?"
    (request,) = sends(cloud.gateway)
    assert request.path == f"/v21.0/{PHONE_NUMBER_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.body["to"] == ANA and "recipient" not in request.body
    assert rows(engine, "SELECT whatsapp_message_id FROM messages WHERE direction='outgoing'") == [
        (sent.provider_id,)
    ]
    assert rows(engine, "SELECT chat_id, status FROM messages WHERE direction='incoming'") == [
        (ANA, "processed")
    ]
    # The contact keeps both identities Meta showed: the phone and the business-scoped id.
    kinds = rows(engine, "SELECT kind FROM contact_identities ORDER BY kind")
    assert kinds == [("bsuid",), ("phone",)]


def test_cloud_a_wrong_or_missing_signature_is_refused_and_nothing_stored(
    cloud: CloudStack, engine: Engine
) -> None:
    payload = cloud.gateway.incoming(PHONE_NUMBER_ID, ANA, "Olá")
    body = FakeCloudAPI.encode(payload)
    # Re-serialised JSON carries the same data in other bytes: its signature cannot match.
    reencoded = json.dumps(payload, ensure_ascii=False).encode()
    attempts = {
        "missing": cloud.post(body, signature=None),
        "wrong secret": cloud.post(body, signature=FakeCloudAPI.sign(body, "other-secret")),
        "other bytes": cloud.post(reencoded, signature=FakeCloudAPI.sign(body, APP_SECRET)),
        "not hex": cloud.post(body, signature="sha256=zz"),
    }
    for name, response in attempts.items():
        assert response.status_code == 401, name
        assert response.json()["error"] == "unauthorized", name
    assert nothing_stored(engine)
    assert cloud.gateway.requests == []


def test_cloud_an_unknown_phone_number_id_is_404(cloud: CloudStack, engine: Engine) -> None:
    response = cloud.deliver(cloud.gateway.incoming("999000111222333", ANA, "Oi"))
    assert response.status_code == 404 and response.json()["error"] == "unknown_instance"
    assert nothing_stored(engine)


def test_cloud_statuses_update_the_reply_and_never_ask_for_an_answer(
    cloud: CloudStack, engine: Engine
) -> None:
    cloud.deliver(cloud.gateway.incoming(PHONE_NUMBER_ID, ANA, "Oi")).raise_for_status()
    wait_until(lambda: reply_status(engine) == "sent", what="the reply to be sent")
    wamid = cloud.gateway.sent[0].provider_id

    delivered = cloud.deliver(statuses(wamid, "delivered"))
    assert delivered.status_code == 200
    assert delivered.json() == {
        "status": "ok",
        "stored": 0,
        "duplicates": 0,
        "ignored": 0,
        "updated": 1,
    }
    assert reply_status(engine) == "delivered"
    assert cloud.deliver(statuses(wamid, "read")).json()["updated"] == 1
    assert reply_status(engine) == "read"
    late = cloud.deliver(statuses(wamid, "delivered"))  # Meta does not order its callbacks
    assert late.json()["updated"] == 0 and reply_status(engine) == "read"
    assert scalar(engine, "SELECT count(*) FROM messages") == 2

    # The next turn sees only the customer's new words: no status ever became a message.
    cloud.deliver(cloud.gateway.incoming(PHONE_NUMBER_ID, ANA, "Tchau")).raise_for_status()
    wait_until(lambda: len(cloud.gateway.sent) == 2, what="the second reply")
    assert [sent.text for sent in cloud.gateway.sent] == ["Recebi: Oi", "Recebi: Tchau"]
    assert scalar(engine, "SELECT count(*) FROM messages WHERE direction='incoming'") == 2


def test_cloud_a_bsuid_only_user_is_answered_by_recipient(
    cloud: CloudStack, engine: Engine
) -> None:
    # A user with a username has no wa_id: only `from_user_id` and `contacts[].user_id`.
    payload = cloud.gateway.incoming(PHONE_NUMBER_ID, ANA, "Oi, sou a Bia")
    value = payload["entry"][0]["changes"][0]["value"]
    value["contacts"] = [{"profile": {"name": "Bia", "username": "bia.pets"}, "user_id": BSUID}]
    message = value["messages"][0]
    del message["from"]
    message["from_user_id"] = BSUID
    response = cloud.deliver(payload)
    assert response.status_code == 200 and response.json()["stored"] == 1
    wait_until(lambda: reply_status(engine) == "sent", what="the reply to be sent")
    (sent,) = cloud.gateway.sent
    assert sent.chat_id == BSUID and sent.text == "Recebi: Oi, sou a Bia"
    (request,) = sends(cloud.gateway)
    assert request.body["recipient"] == BSUID and "to" not in request.body
    assert rows(engine, "SELECT phone, name FROM contacts") == [(None, "Bia")]
    assert rows(engine, "SELECT kind, value FROM contact_identities") == [("bsuid", BSUID)]
