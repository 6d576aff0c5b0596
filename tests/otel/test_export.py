"""A worker process exports over OTLP, continues the webhook's trace, and flushes on stop."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.conftest import EXAMPLE_ORG
from tests.otel.conftest import Traced
from tests.pipeline.support import wait_until
from tests.pipeline.test_recovery import spawn_worker
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.testing.openai_server import FakeOpenAIServer, Reply
from zapvet.testing.otlp import FakeCollector
from zapvet.testing.stack import LocalStack


def stop(worker: subprocess.Popen[bytes], how: str, log: Path) -> None:
    """SIGTERM the dramatiq parent (as docker does), or first its worker process and then the
    parent, as systemd's control-group kill reaches both: the worker process then sees a
    second SIGTERM, the parent's forward, while it is stopping, and dramatiq exits it at once.
    (Not the group again: that would signal the worker process a third time.)"""
    if how == "twice":
        for child in psutil.Process(worker.pid).children():
            child.send_signal(signal.SIGTERM)
        wait_until(
            lambda: "Stopping worker process" in log.read_text(),
            what="the worker process to take the first SIGTERM",
        )
    os.kill(worker.pid, signal.SIGTERM)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["parent", "twice"])
def test_a_stopping_worker_flushes_its_spans_into_the_webhooks_trace(
    traced: Traced, database_url: str, services: ServiceUrls, how: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
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
            log=log,
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
            stop(worker, how, log)
            worker.wait(timeout=60)  # a worker signalled twice used to hang here for good
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
        "send evolution",
    } <= names
    assert {s.service for s in received} == {"zapvet-worker-test"}
    orphans = [s.name for s in received if s.parent_id is None]
    assert orphans == []  # Redis polling made no traces of its own
