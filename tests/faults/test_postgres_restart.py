"""Fault (c): PostgreSQL restarts mid-run, with a turn in flight and webhooks arriving.

The bridge answers 503 for what it could not commit (the gateway sends it again), never a
200; the turn cut short is retried; every message is answered once after recovery.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import psycopg
import pytest
from langchain_openai import ChatOpenAI
from sqlalchemy import Engine

from tests.faults.conftest import engine_for, local_stack
from tests.faults.harness import (
    PrivatePostgres,
    echo_reply,
    post_until_accepted,
    sweep,
    tally,
    unique_text,
    wait_for,
)
from tests.pipeline.support import await_until, purge
from zapvet.embedded import ServiceUrls
from zapvet.queue.locks import ConversationLocks
from zapvet.testing.openai_server import FakeOpenAIServer
from zapvet.testing.stack import INSTANCE, LocalStack

ANA = "5511970001111"


@pytest.fixture
def slow_echo() -> Iterator[FakeOpenAIServer]:
    """The echo model, slow enough for the restart to land inside a turn."""
    with FakeOpenAIServer(responder=echo_reply, latency=1.5) as server:
        yield server


@pytest.fixture
def stack(
    private_postgres: tuple[PrivatePostgres, str],
    services: ServiceUrls,
    slow_echo: FakeOpenAIServer,
) -> Iterator[LocalStack]:
    _, url = private_postgres
    model = ChatOpenAI(
        model="gpt-4o-mini", api_key="test-key", base_url=slow_echo.base_url, max_retries=0
    )  # type: ignore[call-arg]
    with local_stack(url, services.redis_url, model=model) as stack:
        yield stack
    purge(services.redis_url, stack.namespace)


@pytest.fixture
def pg_engine(private_postgres: tuple[PrivatePostgres, str]) -> Iterator[Engine]:
    yield from engine_for(private_postgres[1])


@pytest.mark.slow
def test_postgres_restart_nothing_lost_nothing_doubled(
    stack: LocalStack,
    private_postgres: tuple[PrivatePostgres, str],
    slow_echo: FakeOpenAIServer,
    pg_engine: Engine,
) -> None:
    server, _ = private_postgres
    texts = [unique_text("first")]
    post_until_accepted(stack, stack.gateway.incoming(INSTANCE, ANA, texts[0]))
    wait_for(lambda: slow_echo.in_flight >= 1, what="the turn to reach the model")

    server.stop()  # the turn in flight loses its database under it
    statuses: list[list[int]] = []
    refused = threading.Event()

    def customer(n: int) -> None:
        # All on Ana's conversation: after the restart no other drain touches the locks.
        texts.append(unique_text(f"during{n}"))
        payload = stack.gateway.incoming(INSTANCE, ANA, texts[-1])
        statuses.append(post_until_accepted(stack, payload, on_status=on_status))

    def on_status(status: int) -> None:
        if status >= 500:
            refused.set()

    posting = [threading.Thread(target=customer, args=(n,)) for n in range(3)]
    for thread in posting:
        thread.start()
    wait_for(lambda: slow_echo.in_flight == 0, what="the interrupted turn to end")
    wait_for(refused.is_set, what="the bridge to refuse a webhook")
    server.start()
    for thread in posting:
        thread.join(timeout=120)

    # No 200 for anything the bridge could not commit: a 503 and the gateway's retry.
    assert all(seen[-1] == 200 and 500 not in seen for seen in statuses), statuses
    assert any(503 in seen for seen in statuses), statuses
    wait_for(
        lambda: (
            sweep(stack.database_url, stack.queue).drains == 0
            and tally(pg_engine, stack.gateway, texts).pending == 0
        ),
        timeout=90,
        what="every message to be answered after the restart",
    )
    result = tally(pg_engine, stack.gateway, texts)
    assert (result.sent, result.lost, result.duplicates, result.unrecordable) == (4, 0, 0, 0)


@pytest.mark.anyio
async def test_locks_two_drains_of_one_conversation_in_one_process_never_both_hold(
    database_url: str,
) -> None:
    """Drains that start together, while the process opens its lock connection."""
    locks = ConversationLocks(database_url)
    got: list[tuple[int, bool]] = []
    release = asyncio.Event()

    async def drain(conversation_id: int) -> None:
        async with locks.hold(conversation_id) as holding:
            got.append((conversation_id, holding))
            await release.wait()

    try:
        tasks = [asyncio.create_task(drain(c)) for c in (8, 7)]
        await await_until(lambda: len(got) == 2, what="the first drains to take their locks")
        tasks.append(asyncio.create_task(drain(7)))  # a redelivery of the same conversation
        await await_until(lambda: len(got) == 3, what="the third drain to try the lock")
        release.set()
        await asyncio.gather(*tasks)
    finally:
        await locks.close()
    assert sorted(got) == [(7, False), (7, True), (8, True)]


@pytest.mark.slow
@pytest.mark.anyio
async def test_locks_a_conversation_held_when_postgres_stopped_can_be_taken_after(
    private_postgres: tuple[PrivatePostgres, str],
) -> None:
    server, url = private_postgres
    locks = ConversationLocks(url)
    try:
        async with locks.hold(1):
            pass  # the connection is open: the next lock is taken on it, not on a new one
        with pytest.raises(psycopg.OperationalError):
            async with locks.hold(7) as got:
                assert got
                server.stop()  # the unlock at the end of the block cannot reach the server
        server.start()
        async with locks.hold(7) as again:
            assert again  # not refused forever by a key the dead session took with it
    finally:
        await locks.close()
