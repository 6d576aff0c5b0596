"""Fault (b): Redis restarts empty mid-run. Nothing is lost, nothing is answered twice."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.faults.conftest import local_stack
from tests.faults.harness import (
    PrivateRedis,
    post_until_accepted,
    sweep,
    tally,
    unique_text,
    wait_for,
)
from zapvet.testing.stack import INSTANCE, LocalStack


@pytest.fixture
def stack(database_url: str, private_redis: PrivateRedis) -> Iterator[LocalStack]:
    with local_stack(database_url, private_redis.url()) as stack:
        yield stack


def say(stack: LocalStack, phone: str, text: str) -> list[int]:
    return post_until_accepted(stack, stack.gateway.incoming(INSTANCE, phone, text))


@pytest.mark.slow
def test_redis_lost_mid_run_every_message_is_answered_once(
    stack: LocalStack, private_redis: PrivateRedis, engine: Engine
) -> None:
    texts: list[str] = []

    def customer(n: int, label: str) -> list[int]:
        texts.append(unique_text(f"{label}{n}"))
        return say(stack, f"55119700{n:05d}", texts[-1])

    for n in range(3):  # answered before the fault
        customer(n, "before")
    wait_for(lambda: tally(engine, stack.gateway, texts).lost == 0, what="the first replies")

    stack.stop_worker()
    for n in range(3, 6):  # queued in Redis, then Redis forgets them
        customer(n, "queued")
    private_redis.stop()
    private_redis.forget()
    stack.start_worker()  # its consumers must reconnect once Redis is back
    # Redis is down: the bridge still commits to PostgreSQL, so it still answers 200.
    statuses = [customer(n, "down") for n in range(6, 9)]
    assert all(seen == [200] for seen in statuses), statuses
    private_redis.start()

    for n in range(9, 12):  # after the restart, on the same conversations and new ones
        customer(n if n < 11 else 0, "after")
    # The queue lost the drains of the queued and down messages; the sweeper finds them.
    wait_for(
        lambda: (
            sweep(stack.database_url, stack.queue).drains == 0
            and tally(engine, stack.gateway, texts).pending == 0
        ),
        timeout=90,
        what="every message to be answered after the restart",
    )
    result = tally(engine, stack.gateway, texts)
    assert (result.sent, result.lost, result.duplicates, result.unrecordable) == (12, 0, 0, 0)
