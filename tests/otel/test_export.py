"""A worker process exports over OTLP, continues the webhook's trace, and flushes on stop."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import EXAMPLE_ORG
from tests.otel.conftest import Traced
from tests.pipeline.test_recovery import spawn_worker
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.testing.openai_server import FakeOpenAIServer, Reply
from zapvet.testing.otlp import FakeCollector
from zapvet.testing.stack import LocalStack


@pytest.mark.slow
def test_a_stopping_worker_flushes_its_spans_into_the_webhooks_trace(
    traced: Traced, database_url: str, services: ServiceUrls
) -> None:
    with (
        FakeCollector() as collector,
        FakeOpenAIServer(responder=lambda _: Reply(text="Olá! Como posso ajudar?")) as llm,
        LocalStack(
            database_url=database_url,
            redis_url=services.redis_url,
            model=ScriptedChatModel(),  # unused: the worker runs in its own process
            org_text=EXAMPLE_ORG.read_text(),
            debounce_seconds=0,
            worker=False,
        ) as stack,
    ):
        worker = spawn_worker(
            stack,
            llm.base_url,
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
            OTEL_SERVICE_NAME="zapvet-worker-test",
            # Longer than the test: only the flush on shutdown can deliver the spans.
            OTEL_BSP_SCHEDULE_DELAY="600000",
        )
        try:
            stack.say("5511955554444", "Oi")
            stack.wait(lambda: len(stack.gateway.sent) == 1, timeout=120, what="the reply")
            assert collector.spans == []  # batched, not yet exported
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
        received = collector.spans

    webhook = next(s for s in traced.spans if s.name == "POST /webhooks/evolution/{instance}")
    trace_id = f"{webhook.context.trace_id:032x}"
    names = {s.name for s in received if s.trace_id == trace_id}
    assert {
        "process inbound",
        "route",
        "invoke_agent client",
        "node agent",
        "chat gpt-4o-mini",
        "process outbound",
        "send evolution",
    } <= names
    assert {s.service for s in received} == {"zapvet-worker-test"}
    orphans = [s.name for s in received if s.parent_id is None]
    assert orphans == []  # Redis polling made no traces of its own
