"""No phone, message text or contact name leaves the process in spans or logs unless opted
in; no secret ever does (redaction.py: capture keeps content, never credentials)."""

from __future__ import annotations

import base64
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
from zapvet.media.prepare import MediaSetup
from zapvet.testing import media as media_files
from zapvet.testing.openai_server import FakeOpenAIServer, Reply, ToolCall
from zapvet.testing.stack import API_KEY, WEBHOOK_TOKEN, LocalStack

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

PHONE = "5511955554444"
#: ASCII, so it reads the same in JSON-escaped span dumps.
SENTENCE = "Minha calopsita Jurema engoliu um parafuso azul ontem"
REPLY = "Traga a Jurema agora mesmo, por favor."
#: The WhatsApp pushName; the attendant's prompt carries it as the customer's name.
NAME = "Genoveva Quaresma Bittencourt"
#: The secrets a turn handles: the gateway's API key (sent by the outbox), the webhook
#: token (checked by the bridge) and the LLM key (sent to the model's server).
SECRETS = {"api key": API_KEY, "webhook token": WEBHOOK_TOKEN, "llm key": "sk-privacy-Qx7vT2"}


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
        "name": NAME in text,
        **{label: secret in text for label, secret in SECRETS.items()},
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
        settings = load_settings(openai_api_key=SECRETS["llm key"], openai_base_url=llm.base_url)
        model = build_chat_model(settings)
        with LocalStack(
            database_url=database_url,
            redis_url=services.redis_url,
            model=model,
            org_text=EXAMPLE_ORG.read_text(),
            debounce_seconds=0,
        ) as stack:
            stack.say(PHONE, SENTENCE, push_name=NAME)
            stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
            stack.wait(
                lambda: any(s.name == "send evolution" for s in traced.spans),
                what="the send's span",
            )
    assert stack.gateway.sent[0].text == REPLY
    # Each secret did its job in this turn, so each had a chance to leak.
    assert {r.headers.get("apikey") for r in stack.gateway.requests} == {API_KEY}
    assert {r.headers.get("authorization") for r in llm.requests} == {
        f"Bearer {SECRETS['llm key']}"
    }
    assert NAME in json.dumps(llm.requests[0].body, ensure_ascii=False)  # the name was there

    spans = _dump(traced.spans)
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line]
    assert any(line["msg"] == "message stored" for line in lines)
    logs = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)

    never = dict.fromkeys(SECRETS, False)
    expected = {"phone": capture, "sentence": capture, "reply": capture, "name": capture}
    assert _leaks(spans) == {**expected, **never}
    # Replies are never logged; a name only if captured (no log line carries one today).
    logged, expected_logs = _leaks(logs), {**expected, "reply": False, **never}
    if capture:
        del logged["name"], expected_logs["name"]
    assert logged == expected_logs
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


def test_a_voice_notes_transcript_and_bytes_never_reach_spans_or_logs(
    traced: Traced, database_url: str, services: ServiceUrls
) -> None:
    spoken = "Meu papagaio Bartolomeu comeu uma borracha verde"
    audio = media_files.wav(seconds=1.0)
    log_buffer = io.StringIO()
    setup_logging(load_settings(log_format="json", capture_content=False))
    for handler in logging.getLogger().handlers:
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(log_buffer)
    try:
        with FakeOpenAIServer(
            responder=lambda _: Reply(text=REPLY), transcripts={media_files.sha256(audio): spoken}
        ) as llm:
            settings = load_settings(openai_api_key="k", openai_base_url=llm.base_url)
            with LocalStack(
                database_url=database_url,
                redis_url=services.redis_url,
                model=build_chat_model(settings),
                org_text=EXAMPLE_ORG.read_text(),
                debounce_seconds=0,
                media=MediaSetup(openai_base_url=llm.base_url, openai_api_key="k"),
            ) as stack:
                note = stack.gateway.incoming_media(
                    PHONE, "audio", audio, mimetype="audio/ogg; codecs=opus", ptt=True
                )
                stack.post(note).raise_for_status()
                stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
                stack.wait(
                    lambda: any(s.name == "send evolution" for s in traced.spans),
                    what="the send's span",
                )
    finally:
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)
        structlog.reset_defaults()
    assert spoken in json.dumps(llm.requests[0].body, ensure_ascii=False)  # it was heard
    encoded = base64.b64encode(audio).decode()[:60]
    spans, logs = _dump(traced.spans), log_buffer.getvalue()
    for where in (spans, logs):
        assert spoken not in where and encoded not in where
        assert PHONE not in where
    download = next(s for s in traced.spans if s.name == "media download")
    transcribe = next(s for s in traced.spans if s.name == "media transcribe")
    assert download.attributes is not None and transcribe.attributes is not None
    assert download.attributes["zapvet.media.bytes"] == len(audio)
    assert transcribe.attributes["zapvet.media.mime"] == "audio/ogg"
