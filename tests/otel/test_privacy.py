"""No phone number or message text leaves the process in spans or logs, unless opted in."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan

from tests.conftest import EXAMPLE_ORG
from tests.otel.conftest import Traced
from zapvet.config import load_settings
from zapvet.embedded import ServiceUrls
from zapvet.llm.openai import build_chat_model
from zapvet.logging import setup_logging
from zapvet.testing.openai_server import FakeOpenAIServer, Reply, ToolCall
from zapvet.testing.stack import LocalStack

PHONE = "5511955554444"
#: ASCII, so it reads the same in JSON-escaped span dumps.
SENTENCE = "Minha calopsita Jurema engoliu um parafuso azul ontem"
REPLY = "Traga a Jurema agora mesmo, por favor."


@pytest.fixture
def log_lines(capture: bool) -> Iterator[io.StringIO]:
    """Everything logged during the test, as the JSON lines production would write."""
    setup_logging(load_settings(log_format="json", capture_content=capture))
    buffer = io.StringIO()
    for handler in logging.getLogger().handlers:
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(buffer)
    yield buffer
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    structlog.reset_defaults()


def _dump(spans: list[ReadableSpan]) -> str:
    return "\n".join(span.to_json() for span in spans)


def _leaks(text: str) -> dict[str, bool]:
    return {
        "phone": PHONE in text or PHONE[2:] in text,
        "sentence": SENTENCE in text,
        "reply": REPLY in text,
    }


@pytest.mark.parametrize("capture", [False, True], ids=["default", "captured"])
def test_content_reaches_spans_and_logs_only_when_opted_in(
    capture: bool,
    traced: Traced,
    log_lines: io.StringIO,
    database_url: str,
    services: ServiceUrls,
) -> None:
    with FakeOpenAIServer() as llm:
        llm.enqueue(
            Reply(tool_calls=[ToolCall("list_services", {})]),
            Reply(text=REPLY),
        )
        model = build_chat_model(load_settings(openai_api_key="k", openai_base_url=llm.base_url))
        with LocalStack(
            database_url=database_url,
            redis_url=services.redis_url,
            model=model,
            org_text=EXAMPLE_ORG.read_text(),
            debounce_seconds=0,
        ) as stack:
            stack.say(PHONE, SENTENCE)
            stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
            stack.wait(
                lambda: any(s.name == "send evolution" for s in traced.spans),
                what="the send's span",
            )
    assert stack.gateway.sent[0].text == REPLY

    spans = _dump(traced.spans)
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line]
    assert any(line["msg"] == "message stored" for line in lines)
    logs = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)

    expected = {"phone": capture, "sentence": capture, "reply": capture}
    assert _leaks(spans) == expected
    assert _leaks(logs) == {**expected, "reply": False}  # replies are never logged
    if not capture:
        assert "<redacted>" in spans  # the attributes exist, blanked on the way out
        stored = next(line for line in lines if line["msg"] == "message stored")
        assert "from" not in stored and "messageContent" not in stored


def test_verify_tokens_never_reach_a_span(
    traced: Traced, database_url: str, services: ServiceUrls
) -> None:
    with LocalStack(
        database_url=database_url,
        redis_url=services.redis_url,
        model=build_chat_model(load_settings(openai_api_key="k")),
        org_text=EXAMPLE_ORG.read_text(),
        worker=False,
    ) as stack:
        query = "hub.mode=subscribe&hub.verify_token=s3cr3t-verify&hub.challenge=42"
        response = httpx.get(f"{stack.bridge_url}/webhooks/cloud?{query}", timeout=10)
    assert response.status_code == 403
    spans = _dump(traced.spans)
    assert "/webhooks/cloud" in spans and "hub.challenge=42" in spans
    assert "s3cr3t-verify" not in spans
    assert "hub.verify_token=REDACTED" in spans
