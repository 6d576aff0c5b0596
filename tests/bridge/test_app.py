"""The bridge's per-process instance cache never outlives a change, and a dropped database
connection costs the gateway nothing."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from tests.conftest import EXAMPLE_ORG
from zapvet.db import libpq_url
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.testing.stack import INSTANCE, WEBHOOK_TOKEN, LocalStack

ANA = "5511977776666"


@pytest.fixture
def stack(database_url: str, services: ServiceUrls) -> Iterator[LocalStack]:
    """The bridge alone (no worker): what it stores is what these tests look at."""
    local = LocalStack(
        database_url=database_url,
        redis_url=services.redis_url,
        model=ScriptedChatModel(script=[]),
        org_text=EXAMPLE_ORG.read_text(),
        worker=False,
    )
    with local:
        yield local


def _stored(engine: Engine, provider_id: str) -> int:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM messages WHERE whatsapp_message_id = :id"),
            {"id": provider_id},
        )
        return int(found.scalar_one())


def _change(engine: Engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), {"i": INSTANCE})


def test_bridge_refuses_a_rotated_token_on_the_next_webhook(
    stack: LocalStack, engine: Engine
) -> None:
    assert stack.say(ANA, "Oi").json()["stored"] == 1  # the bridge now holds the token
    _change(engine, "UPDATE whatsapp_instances SET webhook_token = 'rotated' WHERE instance = :i")
    old = stack.gateway.incoming(INSTANCE, ANA, "com o token antigo")
    response = stack.post(old, token=WEBHOOK_TOKEN)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert _stored(engine, old["data"]["key"]["id"]) == 0
    new = stack.gateway.incoming(INSTANCE, ANA, "com o token novo")
    response = stack.post(new, token="rotated")
    assert response.status_code == 200 and response.json()["stored"] == 1
    assert _stored(engine, new["data"]["key"]["id"]) == 1


def test_bridge_refuses_a_deactivated_instance_on_the_next_webhook(
    stack: LocalStack, engine: Engine
) -> None:
    assert stack.say(ANA, "Oi").json()["stored"] == 1
    _change(engine, "UPDATE whatsapp_instances SET is_active = false WHERE instance = :i")
    payload = stack.gateway.incoming(INSTANCE, ANA, "depois de desativada")
    response = stack.post(payload)
    assert response.status_code == 404 and response.json()["error"] == "unknown_instance"
    assert _stored(engine, payload["data"]["key"]["id"]) == 0
    _change(engine, "UPDATE whatsapp_instances SET is_active = true WHERE instance = :i")
    assert stack.say(ANA, "de volta").json()["stored"] == 1


def test_bridge_survives_its_database_connections_being_dropped(
    stack: LocalStack, engine: Engine, database_url: str
) -> None:
    assert stack.say(ANA, "antes").json()["stored"] == 1
    with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert dropped is not None and dropped[0] >= 1  # the bridge's pooled connection
    engine.dispose()  # the test's own connections were dropped too
    payload = stack.gateway.incoming(INSTANCE, ANA, "depois")
    response = stack.post(payload)
    assert response.status_code == 200 and response.json()["stored"] == 1
    assert _stored(engine, payload["data"]["key"]["id"]) == 1
