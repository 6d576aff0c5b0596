"""Logs: one JSON line per event with the seed worker's fields, trace ids, and clean context."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from langchain_core.messages import AIMessage

from tests.conftest import EXAMPLE_ORG
from tests.otel.conftest import Traced
from zapvet.config import load_settings
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.logging import get_logger, setup_logging
from zapvet.testing.stack import LocalStack

SEED_FIELDS = {"level", "time", "pid", "hostname", "msg"}
REPLY = "Olá! Em que posso ajudar?"
JOB_FIELDS = {"jobId", "organizationId", "type", "agentType", "contactId", "conversationId"}


def _configure(log_format: str) -> io.StringIO:
    setup_logging(load_settings(log_format=log_format))
    buffer = io.StringIO()
    for handler in logging.getLogger().handlers:
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(buffer)
    return buffer


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    yield _configure("json")
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    structlog.reset_defaults()


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line]


@pytest.mark.slow  # the whole pipeline
def test_a_turn_logs_the_seed_fields_with_trace_ids(
    traced: Traced, json_logs: io.StringIO, database_url: str, services: ServiceUrls
) -> None:
    model = ScriptedChatModel(script=[AIMessage(REPLY)])
    with LocalStack(
        database_url=database_url,
        redis_url=services.redis_url,
        model=model,
        org_text=EXAMPLE_ORG.read_text(),
        debounce_seconds=0,
        threads=1,  # one worker thread: the send job runs where the drain job ran
    ) as stack:
        stack.say("5511955554444", "Oi, tem horário amanhã?")
        stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
        stack.wait(
            lambda: any(line["msg"] == "Response sent successfully" for line in _lines(json_logs)),
            what="the send's log line",
        )
    lines = _lines(json_logs)
    ready = next(line for line in lines if line["msg"] == "[CLIENT-AI] Response ready")
    assert SEED_FIELDS | JOB_FIELDS | {"responseLength", "trace_id", "span_id"} <= ready.keys()
    assert ready["level"] == 30 and isinstance(ready["time"], int)
    assert ready["type"] == "CLIENT" and ready["agentType"] == "client-ai"
    assert ready["responseLength"] == len(REPLY)
    assert ready["organizationId"] == stack.organization_id
    assert len(ready["trace_id"]) == 32 and len(ready["span_id"]) == 16

    sent = next(line for line in lines if line["msg"] == "Response sent successfully")
    # The drain job sends its reply itself, right after its commit: same job, same fields.
    assert sent["jobId"] == ready["jobId"]
    assert sent["conversationId"] == ready["conversationId"]
    assert sent["trace_id"] == ready["trace_id"]  # the reply's send is in the message's trace
    assert sent["responseLength"] == ready["responseLength"]


def test_stdlib_records_render_as_json_lines_too(json_logs: io.StringIO) -> None:
    logging.getLogger("dramatiq.worker").warning("worker %s restarted", "w1")
    get_logger("zapvet.test").error("boom", phone_digits="5511955554444")
    first, second = _lines(json_logs)
    assert first["msg"] == "worker w1 restarted" and first["level"] == 40
    assert first["logger"] == "dramatiq.worker"
    assert second["level"] == 50 and second["phone_digits"] == "<phone>"


def test_console_format_is_for_people() -> None:
    buffer = _configure("console")
    try:
        get_logger("zapvet.test").info("[CLIENT-AI] Response ready", responseLength=42)
    finally:
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)
        structlog.reset_defaults()
    line = buffer.getvalue()
    assert "[CLIENT-AI] Response ready" in line and "responseLength=42" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
