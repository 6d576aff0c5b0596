"""Fault (d): the WhatsApp gateway is unreachable. Sends are tried four times (retries after
2, 4 and 8 s), then dead-lettered and marked failed; the sweeper leaves them alone; once the
gateway is back, requeueing the dead letters (`zapvet dlq requeue`) delivers each once."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import Engine

from tests.faults.harness import gateway_outage, sweep, tally, unique_text, wait_for
from tests.pipeline.conftest import rows
from zapvet.queue import dlq
from zapvet.testing.stack import LocalStack

ATTEMPTS = 4  # the first and three retries


@pytest.mark.slow
def test_gateway_outage_dead_letters_then_requeue_delivers_once(
    shared_stack: LocalStack, engine: Engine
) -> None:
    stack = shared_stack
    texts = [unique_text("fora"), unique_text("do-ar")]
    back = gateway_outage(stack.gateway)
    for n, text in enumerate(texts):
        stack.say(f"55119700077{n:02d}", text)
    client = redis.Redis.from_url(stack.redis_url)
    try:
        wait_for(
            lambda: len(dlq.list_dead(client, stack.namespace)) == len(texts),
            timeout=90,
            what="both sends to be dead-lettered",
        )
        assert rows(engine, "SELECT status, attempts FROM messages WHERE direction='outgoing'") == [
            ("failed", ATTEMPTS)
        ] * len(texts)
        assert sweep(stack.database_url, stack.queue).sends == 0  # failed is left to people

        back()
        assert stack.gateway.sent == []
        assert dlq.requeue(stack.queue.broker, client, stack.namespace) == len(texts)
        wait_for(
            lambda: (
                tally(engine, stack.gateway, texts).pending == 0
                and len(stack.gateway.sent) == len(texts)
                and not rows(engine, "SELECT 1 FROM messages WHERE status = 'failed'")
            ),
            what="the requeued sends",
        )
        assert sweep(stack.database_url, stack.queue).sends == 0
        assert dlq.list_dead(client, stack.namespace) == []
    finally:
        client.close()
    result = tally(engine, stack.gateway, texts)
    assert (result.lost, result.duplicates, result.unrecordable) == (0, 0, 0)
    sends = [r for r in stack.gateway.requests if r.path.startswith("/message/")]
    assert len(sends) == len(texts)  # refused connections never arrived
