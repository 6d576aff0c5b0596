"""Fault (e): the model answers 500s, then hangs past the timeout. Each turn still gets one
reply (the fallback), an `ai_interactions` error row is written, and the worker carries on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_openai import ChatOpenAI
from sqlalchemy import Engine

from tests.faults.conftest import local_stack
from tests.faults.harness import ECHO, answers, tally, unique_text, wait_for
from tests.pipeline.conftest import rows
from tests.pipeline.support import purge
from zapvet.embedded import ServiceUrls
from zapvet.graphs.loop import FALLBACK_REPLY
from zapvet.testing.openai_server import FakeOpenAIServer, Reply
from zapvet.testing.stack import LocalStack

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

ANA = "5511970003333"
#: Seconds before a model request is abandoned here (production: 30 s).
TIMEOUT_S = 1.0


@pytest.fixture
def stack(
    database_url: str, services: ServiceUrls, echo_model: FakeOpenAIServer
) -> Iterator[LocalStack]:
    # The production client (ChatOpenAI, its own retries), with a test-sized timeout.
    model = ChatOpenAI(
        model="gpt-4o-mini",
        api_key="test-key",  # type: ignore[arg-type]
        base_url=echo_model.base_url,
        timeout=TIMEOUT_S,
        max_retries=1,
    )
    with local_stack(database_url, services.redis_url, model=model) as stack:
        yield stack
    purge(services.redis_url, stack.namespace)


def test_llm_errors_and_timeouts_give_one_fallback_each_and_an_error_row(
    stack: LocalStack, echo_model: FakeOpenAIServer, engine: Engine
) -> None:
    texts = [unique_text("erro500"), unique_text("lento"), unique_text("normal")]
    faults = {
        texts[0]: [Reply("upstream failure", status=500, retry_after=0.05)] * 2,
        texts[1]: [Reply(ECHO + "tarde demais", delay=TIMEOUT_S * 3)] * 2,
        texts[2]: [],
    }
    for turn, (text, replies) in enumerate(faults.items(), start=1):
        echo_model.enqueue(*replies)  # one turn at a time: the scripted faults are a FIFO
        stack.say(ANA, text)
        wait_for(
            lambda turn=turn, text=text: (
                len(stack.gateway.sent) == turn
                and tally(engine, stack.gateway, [text]).pending == 0
            ),
            what=f"the reply to {text}",
        )
    assert [s.text for s in stack.gateway.sent] == [
        FALLBACK_REPLY,
        FALLBACK_REPLY,
        f"{ECHO}{texts[2]}",
    ]
    assert answers(stack.gateway.sent)[texts[2]] == 1
    interactions = rows(engine, "SELECT status, error_message FROM ai_interactions ORDER BY id")
    assert [status for status, _ in interactions] == ["error", "error", "success"]
    assert "500" in str(interactions[0][1])
    assert "Timeout" in str(interactions[1][1]) or "timed out" in str(interactions[1][1])
    # Each failed request was retried once by the client, and never after the fallback.
    assert len(echo_model.requests) == 2 + 2 + 1
    processed = rows(engine, "SELECT status FROM messages WHERE direction='incoming'")
    assert processed == [("processed",)] * 3
