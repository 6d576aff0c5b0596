"""Delivery statuses of the AI's replies: shown in stats and metrics, failures not silent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from tests.pipeline.conftest import rows
from tests.pipeline.support import zapvet
from zapvet.testing.stack import INSTANCE, LocalStack

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

ANA = "5511977776666"
BETO = "5511966665555"


def status_update(provider_id: str, phone: str, status: str) -> dict[str, Any]:
    """Evolution's `messages.update` for a message we sent (research/whatsapp.md §4.2)."""
    data = {
        "keyId": provider_id,
        "remoteJid": f"{phone}@s.whatsapp.net",
        "fromMe": True,
        "participant": None,
        "status": status,
        "instanceId": "b1c2d3e4-0000-4a1b-9c2d-000000000001",
        "messageId": "cm3x0000000000000000000001",
    }
    return {"event": "messages.update", "instance": INSTANCE, "data": data}


def metric(stack: LocalStack, name: str, **labels: str) -> float:
    text = httpx.get(f"{stack.bridge_url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


def test_deliveries_read_and_failed_after_acceptance_are_shown(
    stack: LocalStack, engine: Engine
) -> None:
    stack.say(ANA, "Oi, chegou?")
    stack.say(BETO, "Oi, tudo bem?")
    stack.wait(lambda: len(stack.gateway.sent) == 2, what="both replies")
    stack.wait(
        lambda: rows(engine, "SELECT count(*) FROM messages WHERE status = 'sent'") == [(2,)],
        what="both replies settled",
    )
    to = {sent.chat_id.split("@")[0]: sent.provider_id for sent in stack.gateway.sent}

    for status in ("DELIVERY_ACK", "READ"):
        stack.post(status_update(to[ANA], ANA, status)).raise_for_status()
    stack.post(status_update(to[BETO], BETO, "ERROR")).raise_for_status()

    ((error,),) = rows(engine, "SELECT error FROM messages WHERE status = 'failed'")
    assert error == "failed at the provider"
    replies = httpx.get(f"{stack.bridge_url}/stats", timeout=30).json()["replies"]
    assert replies["last_day"] == {"read": 1, "failed": 1}
    assert replies["failed_after_acceptance_last_hour"] == 1
    (failure,) = replies["latest_failures"]
    assert failure["after_acceptance"] is True and failure["error"] == error
    assert metric(stack, "zapvet_replies", status="read") == 1
    assert metric(stack, "zapvet_replies_failed_last_hour", stage="after_acceptance") == 1
    assert metric(stack, "zapvet_replies_failed_last_hour", stage="refused") == 0
    shown = zapvet(
        "stats",
        database_url=stack.database_url,
        redis_url=stack.redis_url,
        namespace=stack.namespace,
    )
    assert shown.exit_code == 0, shown.output
    assert "AI replies, last 24 h: failed 1 · read 1" in shown.stdout
    assert "failed after the gateway accepted them: 1 in the last hour, 1 in 24 h" in shown.stdout
    assert "(after acceptance): failed at the provider" in shown.stdout
