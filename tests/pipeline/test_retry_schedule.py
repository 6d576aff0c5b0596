"""The outbound send's retry schedule: 3 retries of a transient failure, after 2 s, 4 s, 8 s.

The schedule is read where Dramatiq takes it from: the `delay` each retry is enqueued with
(Redis turns it into the message's `eta` on the delay queue). A recording middleware then
makes each retry due at once, so the test runs in well under a second of waiting and never
measures time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.common import current_millis
from dramatiq.middleware import Retries
from langchain_core.messages import AIMessage
from sqlalchemy import Engine

from tests.conftest import EXAMPLE_ORG
from tests.pipeline.conftest import rows, scalar
from tests.pipeline.support import purge
from zapvet.embedded import ServiceUrls
from zapvet.errors import PermanentError
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.queue import dlq
from zapvet.queue.actors import MAX_RETRIES
from zapvet.queue.broker import OUTBOUND
from zapvet.testing.stack import LocalStack

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

ANA = "5511977776666"
SEND = "/message/sendText/"
REPLY = "Olá! Como posso ajudar?"


@dataclass(frozen=True)
class Scheduled:
    """A retry as enqueued: the retry count it carries, its delay, its queue, its eta."""

    retries: int
    delay: int
    queue: str
    eta: int
    enqueued_at: int


class RecordRetries(dramatiq.Middleware):
    """Record every delayed re-enqueue of `send_message`, then make it due immediately."""

    def __init__(self) -> None:
        self.retries: list[Scheduled] = []

    def before_enqueue(self, broker: Any, message: Any, delay: int | None) -> None:
        if message.actor_name != "send_message" or delay is None:
            return
        options = message.options
        now = current_millis()
        self.retries.append(
            Scheduled(options.get("retries", 0), delay, message.queue_name, options["eta"], now)
        )
        options["eta"] = now  # the message is encoded after this hook: it is due at once


@pytest.fixture
def recorder() -> RecordRetries:
    return RecordRetries()


@pytest.fixture
def stack(
    database_url: str, services: ServiceUrls, recorder: RecordRetries
) -> Iterator[LocalStack]:
    local = LocalStack(
        database_url=database_url,
        redis_url=services.redis_url,
        model=ScriptedChatModel(responder=lambda _: AIMessage(REPLY)),
        org_text=EXAMPLE_ORG.read_text(),
        debounce_seconds=0,
        worker=False,
    )
    with local:
        local.queue.broker.add_middleware(recorder)
        local.start_worker()
        yield local
    purge(services.redis_url, local.namespace)


def send_attempts(stack: LocalStack) -> int:
    return len([r for r in stack.gateway.requests if r.path.startswith(SEND)])


def reply_status(engine: Engine) -> object:
    """The reply's status, None while the turn has not written it."""
    return scalar(engine, "SELECT status FROM messages WHERE direction='outgoing'")


def outgoing(engine: Engine) -> tuple[Any, ...]:
    (row,) = rows(engine, "SELECT status, attempts, error FROM messages WHERE direction='outgoing'")
    return row


def test_send_actor_declares_three_retries_and_never_retries_permanent_errors(
    stack: LocalStack,
) -> None:
    options = stack.queue.send_actor.options
    assert MAX_RETRIES == 3 and options["max_retries"] == 3
    assert options["throws"] == (PermanentError,)
    # The delay is the actor's own (a `Retry(delay=…)`), so Dramatiq's jittered backoff and
    # its min/max options are not in play; the Retries middleware that applies it is.
    assert "min_backoff" not in options and "max_backoff" not in options
    assert "retry_when" not in options
    assert any(isinstance(m, Retries) for m in stack.queue.broker.middleware)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_send_retries_a_transient_failure_after_2_4_and_8_seconds(
    stack: LocalStack, engine: Engine, recorder: RecordRetries, status: int
) -> None:
    stack.gateway.fail_next(status, times=3)
    stack.say(ANA, "Oi")
    stack.wait(lambda: reply_status(engine) == "sent", what="delivery on the fourth attempt")
    assert [(r.retries, r.delay) for r in recorder.retries] == [(1, 2000), (2, 4000), (3, 8000)]
    for retry in recorder.retries:
        # Dramatiq puts a delayed message on the delay queue, due `delay` ms after enqueueing.
        assert retry.queue == f"{OUTBOUND}.DQ"
        assert retry.eta - retry.delay <= retry.enqueued_at
    assert send_attempts(stack) == 4
    assert [sent.text for sent in stack.gateway.sent] == [REPLY]
    assert outgoing(engine) == ("sent", 4, None)


def test_send_dead_letters_after_the_third_retry_fails(
    stack: LocalStack, engine: Engine, recorder: RecordRetries
) -> None:
    stack.gateway.fail_next(500, times=5, message="Connection Closed")
    stack.say(ANA, "Oi")
    client = redis.Redis.from_url(stack.redis_url)
    try:
        stack.wait(lambda: len(dlq.list_dead(client, stack.namespace)) == 1, what="a dead letter")
        (dead,) = dlq.list_dead(client, stack.namespace)
    finally:
        client.close()
    assert (dead.queue, dead.actor) == (OUTBOUND, "send_message")
    assert [(r.retries, r.delay) for r in recorder.retries] == [(1, 2000), (2, 4000), (3, 8000)]
    assert send_attempts(stack) == 4  # the first try and three retries, no fifth
    status, attempts, error = outgoing(engine)
    assert (status, attempts) == ("failed", 4) and "Connection Closed" in str(error)
    assert stack.gateway.sent == []


def test_send_does_not_retry_a_permanent_refusal(
    stack: LocalStack, engine: Engine, recorder: RecordRetries
) -> None:
    stack.gateway.fail_next(401)
    stack.say(ANA, "Oi")
    stack.wait(lambda: reply_status(engine) == "failed", what="the refusal to be recorded")
    assert recorder.retries == [] and send_attempts(stack) == 1
    assert outgoing(engine)[1] == 1
