"""`GET /metrics`: the documented families, figures equal to the tables, labels free of PII."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import Engine, text

from tests.conftest import EXAMPLE_ORG
from tests.pipeline.conftest import scalar
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.testing.stack import INSTANCE, LocalStack

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

DOCS = Path(__file__).parents[2] / "docs" / "metrics.md"
ESCALATING = "5511944440001"
CALM = "5511944440002"
REFUSED = "5511944440003"
PRICING = "5511944440004"
LATE = "5511944440005"


def _reply(messages: list[BaseMessage]) -> AIMessage:
    """Escalate the first turn that mentions blood; answer everything else plainly."""
    last = str(messages[-1].content)
    if "sangue" in last:
        call = {"name": "escalate_to_human", "args": {"reason": "sangue"}, "id": "call-1"}
        return AIMessage("", tool_calls=[call])
    if "custa" in last:
        return AIMessage("O banho sai por R$ 987,65.")  # one price in no source: ungrounded
    if messages[-1].type == "tool":
        return AIMessage("Já chamei a equipe, aguarde.")
    return AIMessage("Olá! Como posso ajudar?")


@pytest.fixture
def stack(database_url: str, services: ServiceUrls) -> Iterator[LocalStack]:
    with LocalStack(
        database_url=database_url,
        redis_url=services.redis_url,
        model=ScriptedChatModel(responder=_reply),
        org_text=EXAMPLE_ORG.read_text(),
        debounce_seconds=0,
    ) as local:
        yield local


def _scrape(stack: LocalStack) -> list[Sample]:
    response = httpx.get(f"{stack.bridge_url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return [s for f in text_string_to_metric_families(response.text) for s in f.samples]


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def _jobs(samples: list[Sample], actor: str) -> dict[str, float]:
    return {
        s.labels["outcome"]: s.value
        for s in samples
        if s.name == "zapvet_jobs_total" and s.labels["actor"] == actor
    }


def _depth(samples: list[Sample]) -> dict[str, dict[str, float]]:
    depth: dict[str, dict[str, float]] = {}
    for s in samples:
        if s.name == "zapvet_queue_messages":
            depth.setdefault(s.labels["queue"], {})[s.labels["state"]] = s.value
    return depth


def _idle(depth: dict[str, dict[str, float]]) -> bool:
    return all(d["waiting"] + d["active"] + d["delayed"] == 0 for d in depth.values())


def test_metrics_report_the_work_done(stack: LocalStack, engine: Engine) -> None:
    # One step at a time, so each gateway fault hits the send it is meant for.
    stack.gateway.fail_next(500)  # the calm reply's first send fails; a send job retries it
    stack.say(CALM, "Oi, bom dia")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the calm reply, on its retry")
    stack.gateway.fail_next(400)  # this reply is refused for good: failed, dead-lettered
    stack.say(REFUSED, "Oi, tudo bem?")
    stack.wait(
        lambda: _jobs(_scrape(stack), "send_message").get("failed") == 1,
        what="the refused send to fail",
    )
    stack.say(PRICING, "Quanto custa o banho?")  # answered with a price no source backs
    payload = stack.gateway.incoming("petfeliz", ESCALATING, "Meu gato está com sangue no xixi")
    stack.post(payload).raise_for_status()
    stack.post(payload).raise_for_status()  # the gateway redelivers: a duplicate
    stack.wait(lambda: len(stack.gateway.sent) == 4, what="two more replies and the alert")

    def settled() -> bool:
        samples = _scrape(stack)
        return _jobs(samples, "send_message").get("processed") == 2 and _idle(_depth(samples))

    stack.wait(settled, what="the sends to be counted and the queues to empty")
    samples = _scrape(stack)

    assert _value(samples, "zapvet_inbound_messages_total", outcome="stored") == 4
    assert _value(samples, "zapvet_inbound_messages_total", outcome="duplicates") == 1
    # The drains send their replies themselves; send jobs are the calm reply's retry, the
    # owner's alert, and the refused reply's dead letter.
    assert _jobs(samples, "send_message") == {"processed": 2, "failed": 1}
    assert _jobs(samples, "drain") == {"processed": 4}  # the duplicate starts no drain
    assert _jobs(samples, "send_proactive") == {"processed": 1}  # the owner's alert
    drains = sum(_jobs(samples, "drain").values())
    assert _value(samples, "zapvet_job_duration_seconds_count", actor="drain") == drains
    assert _value(samples, "zapvet_job_duration_seconds_count", actor="send_message") == 3
    buckets = [
        s
        for s in samples
        if s.name == "zapvet_job_duration_seconds_bucket" and s.labels["actor"] == "drain"
    ]
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == drains

    turns = scalar(engine, "SELECT count(*) FROM ai_interactions WHERE ai_type = 'client'")
    assert turns == 4
    assert _value(samples, "zapvet_turns_total", agent="client", status="success") == turns
    assert _value(samples, "zapvet_turn_duration_seconds_count", agent="client") == turns
    tokens = scalar(engine, "SELECT sum(input_tokens) FROM ai_interactions")
    assert _value(samples, "zapvet_llm_tokens_total", model="scripted", type="input") == tokens
    assert _value(samples, "zapvet_escalations_total") == 1
    assert _value(samples, "zapvet_sends_total", outcome="sent") == 4
    assert _value(samples, "zapvet_sends_total", outcome="failed") == 1
    assert _value(samples, "zapvet_ungrounded_facts_total", agent="client") == 1  # R$ 987,65
    idle = {"waiting": 0, "active": 0, "delayed": 0, "dead": 0}
    assert _depth(samples) == {
        "inbound": idle,
        "outbound": {**idle, "dead": 1},  # the refused send
        "proactive": idle,
        "webhooks": idle,
    }
    assert _value(samples, "zapvet_queue_failed_last_hour", queue="outbound") == 1
    assert _value(samples, "zapvet_queue_failed_last_hour", queue="inbound") == 0
    assert _value(samples, "zapvet_alert", alert="no_active_worker") == 0

    # With no worker consuming: one message waits, one debounced drain is delayed.
    stack.stop_worker()
    stack.say(LATE, "Alguém aí?")
    stack.queue.drain(1, delay_ms=3_600_000)
    samples = _scrape(stack)
    assert _depth(samples) == {
        "inbound": {**idle, "waiting": 1, "delayed": 1},
        "outbound": {**idle, "dead": 1},
        "proactive": idle,
        "webhooks": idle,
    }
    assert _value(samples, "zapvet_alert", alert="no_active_worker") == 1
    assert _value(samples, "zapvet_inbound_messages_total", outcome="stored") == 5


def test_every_family_is_documented_and_labels_carry_no_personal_data(
    stack: LocalStack, engine: Engine
) -> None:
    stack.say(CALM, "Oi, meu telefone é 11 98765-4321")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
    # The instance families appear once an instance has reported its connection.
    stack.post(stack.gateway.connection_update(INSTANCE, "open")).raise_for_status()
    # The webhook families, once an endpoint has deliveries (one dead, one endpoint gone).
    with engine.begin() as conn:
        endpoint = conn.execute(
            text(
                "INSERT INTO webhook_endpoints (organization_id, url, secret, events, enabled,"
                " allow_private_targets, disabled_at) VALUES (:org, 'https://hooks.example.com/x',"
                " 'whsec-0123456789abcdef', '[]', true, false, now()) RETURNING id"
            ),
            {"org": stack.organization_id},
        ).scalar()
        event = conn.execute(
            text(
                "INSERT INTO webhook_events (organization_id, uid, type, resource, data)"
                " VALUES (:org, gen_random_uuid(), 'contact.created', 'contact:1', '{}')"
                " RETURNING id"
            ),
            {"org": stack.organization_id},
        ).scalar()
        conn.execute(
            text(
                "INSERT INTO webhook_deliveries (organization_id, event_id, endpoint_id,"
                " resource, status, attempts, next_attempt_at, retry_from)"
                " VALUES (:org, :event, :endpoint, 'contact:1', 'dead', 9, now(), now())"
            ),
            {"org": stack.organization_id, "event": event, "endpoint": endpoint},
        )
    samples = _scrape(stack)
    assert _value(samples, "zapvet_webhook_deliveries", organization="petfeliz", status="dead") == 1
    assert _value(samples, "zapvet_webhook_endpoints_disabled", organization="petfeliz") == 1
    documented = set(re.findall(r"^\| `(zapvet_[a-z_]+)`", DOCS.read_text(), re.MULTILINE))
    exposed = {re.sub(r"_(bucket|count|sum|created)$", "", s.name) for s in samples}
    assert exposed == documented
    for sample in samples:
        for name, value in sample.labels.items():
            assert re.fullmatch(r"[a-z0-9_.+\-]+|\+Inf|[0-9.]+", value), (name, value)
            assert not re.search(r"\d{8}", value), (name, value)
