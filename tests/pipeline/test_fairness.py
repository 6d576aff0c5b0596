"""Fair scheduling between organizations (`queue.fairness`), on the real Redis and PostgreSQL.

Two `Fairness` objects on separate lock connections stand for two worker processes; the
owed marks, contention and waiting sets live in one Redis namespace of the test's own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from langchain_core.outputs import ChatResult
from pydantic import Field
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import second_shop, start_conversation
from tests.pipeline.conftest import echo, new_messages, rows
from tests.pipeline.support import Recorder, await_until, new_namespace, purge
from tests.pipeline.test_drain_rounds import text_from
from tests.pipeline.test_scheduler import MORNING, debounce_of, incoming_row
from zapvet import db
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import Organization
from zapvet.queue.actors import declare
from zapvet.queue.broker import build_broker
from zapvet.queue.fairness import Fairness, Shares
from zapvet.queue.locks import ConversationLocks
from zapvet.queue.resources import Resources, build_resources
from zapvet.queue.scheduler import SWEEP_MARGIN, tick

pytestmark = pytest.mark.anyio

A, B = 101, 202  # two organizations' ids (the slots and sets need no rows)


@pytest.fixture
def client(services: ServiceUrls) -> Iterator[tuple[redis.Redis, str]]:
    namespace = new_namespace()
    connection = redis.Redis.from_url(services.redis_url)
    yield connection, namespace
    purge(services.redis_url, namespace)
    connection.close()


@pytest.fixture
async def locks(database_url: str) -> AsyncIterator[list[ConversationLocks]]:
    made: list[ConversationLocks] = []
    yield made
    for keeper in made:
        await keeper.close()


def process(
    client: tuple[redis.Redis, str],
    locks: list[ConversationLocks],
    database_url: str,
    **shares: int,
) -> tuple[Fairness, ConversationLocks]:
    """One worker process's view: its own counts and its own lock connection."""
    keeper = ConversationLocks(database_url)
    locks.append(keeper)
    return Fairness(client[0], client[1], Shares(**shares)), keeper


def test_one_drain_is_owed_per_conversation_until_it_starts(
    client: tuple[redis.Redis, str],
) -> None:
    fairness = Fairness(*client)
    assert fairness.owe_once(1, A)
    assert not fairness.owe_once(1, A)  # the queued drain will read this message too
    assert fairness.owe_once(2, A)
    assert fairness.owed([1, 2, 3]) == {1, 2}
    fairness.forgive(1)
    assert fairness.owed([1, 2, 3]) == {2}


async def test_a_started_drain_clears_its_mark_before_it_reads(
    client: tuple[redis.Redis, str], locks: list[ConversationLocks], database_url: str
) -> None:
    fairness, keeper = process(client, locks, database_url)
    assert fairness.owe_once(1, A)
    ticket = await fairness.admit(keeper, 1, A)
    assert ticket is not None
    assert fairness.owe_once(1, A)  # a message stored now gets a drain of its own
    assert await fairness.release(keeper, ticket) == []


async def test_alone_an_organization_uses_every_thread(
    client: tuple[redis.Redis, str], locks: list[ConversationLocks], database_url: str
) -> None:
    fairness, keeper = process(client, locks, database_url, per_process=2, fleet=2)
    for conversation in range(1, 11):
        fairness.owe_once(conversation, A)
    tickets = [await fairness.admit(keeper, conversation, A) for conversation in range(1, 11)]
    assert all(ticket is not None for ticket in tickets)
    assert fairness.running(A) == 10


async def test_past_its_share_while_another_contends_a_drain_parks_and_is_woken_in_order(
    client: tuple[redis.Redis, str], locks: list[ConversationLocks], database_url: str
) -> None:
    fairness, keeper = process(client, locks, database_url, per_process=2, fleet=8)
    for conversation in (1, 2, 3, 4):
        fairness.owe_once(conversation, A)
    fairness.owe_once(50, B)  # B's first message: A contends with it from now on
    first = await fairness.admit(keeper, 1, A)
    second = await fairness.admit(keeper, 2, A)
    assert first is not None and second is not None
    assert await fairness.admit(keeper, 3, A) is None  # A holds its share: parked
    assert await fairness.admit(keeper, 4, A) is None
    assert fairness.owed([3, 4]) == {3, 4}  # still owed: no second drain, no sweep
    assert not fairness.owe_once(3, A)
    b_turn = await fairness.admit(keeper, 50, B)  # B is under its share: it runs
    assert b_turn is not None
    assert await fairness.release(keeper, first) == [3]  # oldest parked first
    assert await fairness.release(keeper, second) == [4]
    assert await fairness.release(keeper, b_turn) == []


async def test_the_fleet_share_holds_across_processes_and_dies_with_one(
    client: tuple[redis.Redis, str], locks: list[ConversationLocks], database_url: str
) -> None:
    here, here_locks = process(client, locks, database_url, per_process=5, fleet=2)
    there, there_locks = process(client, locks, database_url, per_process=5, fleet=2)
    here.owe_once(50, B)  # another organization contends
    assert await here.admit(here_locks, 1, A) is not None
    assert await there.admit(there_locks, 2, A) is not None
    assert await here.admit(here_locks, 3, A) is None  # both fleet slots are taken
    await there_locks.close()  # that process dies: its slot goes with its connection
    deadline = time.monotonic() + 30  # a hang guard: the server ends the backend shortly
    while (woken := await here.admit(here_locks, 4, A)) is None:
        assert time.monotonic() < deadline, "the dead process's slot was never freed"
        await asyncio.sleep(0.05)
    assert woken.slot is not None


async def test_each_ending_turn_wakes_two_once_nobody_else_waits(
    client: tuple[redis.Redis, str], locks: list[ConversationLocks], database_url: str
) -> None:
    fairness, keeper = process(client, locks, database_url, per_process=1, fleet=4)
    fairness.owe_once(50, B)
    running = await fairness.admit(keeper, 1, A)
    for conversation in (2, 3, 4):
        assert await fairness.admit(keeper, conversation, A) is None
    assert running is not None
    assert await fairness.release(keeper, running) == [2]  # contended: one for one
    client[0].zrem(f"{client[1]}:fair:contending", str(B))  # B went quiet
    again = await fairness.admit(keeper, 2, A)
    assert again is not None and not again.contended and again.waiting
    assert await fairness.release(keeper, again) == [3, 4]  # alone: the share grows back
    last = await fairness.admit(keeper, 3, A)
    assert last is not None and not last.waiting  # nothing parked: no wake-up round trip
    assert await fairness.release(keeper, last) == []


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.build_async_engine(database_url, pool_size=2)
    yield db.async_session_maker(engine)
    await engine.dispose()


async def test_the_sweeper_leaves_owed_conversations_to_their_drain(
    client: tuple[redis.Redis, str],
    session: Session,
    petfeliz: Organization,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    org_id = petfeliz.id or 0
    conversation_id = start_conversation(session, petfeliz, "5511977776666").conversation_id
    late = debounce_of(session, petfeliz) + SWEEP_MARGIN
    incoming_row(session, conversation_id, org_id, late + timedelta(seconds=1))
    fairness = Fairness(*client)
    fairness.owe_once(conversation_id, org_id)  # parked, or queued behind a flood
    during = Recorder()
    await tick(sessions, during, MORNING, owed=fairness.owed)
    assert during.drains == []
    fairness.forgive(conversation_id)  # the mark expired: the drain was lost
    after = Recorder()
    await tick(sessions, after, MORNING, owed=fairness.owed)
    assert after.drains == [conversation_id]


class GatedModel(ScriptedChatModel):
    """The echo model, except that turns answering a flood message wait for `gate`."""

    gate: asyncio.Event = Field(default_factory=asyncio.Event)
    waiting: int = 0

    async def _agenerate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        if any("enxurrada" in text for text in new_messages(messages)):
            self.waiting += 1
            await self.gate.wait()
        return self._generate(messages, stop, **kw)


def replies_in(engine: Engine, conversation_id: int) -> list[str]:
    query = "SELECT content FROM messages WHERE conversation_id = :id AND direction = 'outgoing'"
    return [str(row[0]) for row in rows(engine, query, id=conversation_id)]


async def test_a_flooding_shop_past_its_share_lets_another_shops_drain_run_first(
    client: tuple[redis.Redis, str],
    database_url: str,
    session: Session,
    engine: Engine,
    petfeliz: Organization,
    services: ServiceUrls,
) -> None:
    flooding = second_shop(session)
    a_org, b_org = flooding.id or 0, petfeliz.id or 0
    a_conversations = [
        start_conversation(session, flooding, f"55119700000{i:02d}").conversation_id
        for i in range(4)
    ]
    b_conversation = start_conversation(session, petfeliz, "5521970000001").conversation_id
    for conversation in a_conversations:
        text_from(session, flooding, conversation, "enxurrada")
    text_from(session, petfeliz, b_conversation, "oi")
    model = GatedModel(responder=echo)
    res = build_resources(database_url, lambda: model, pool_size=4)
    res.send_inline = False
    broker = build_broker(services.redis_url, namespace=client[1])

    async def resources() -> Resources:
        return res

    queue = declare(broker, resources, Shares(per_process=2, fleet=8))
    drain = queue.drain_actor.fn.__wrapped__  # the coroutine, on this test's event loop
    woken: list[tuple[int, int | None]] = []
    queue.drain = lambda c, delay_ms=0, organization_id=None: woken.append((c, organization_id))  # type: ignore[method-assign]
    try:
        for conversation in a_conversations:  # as the bridge asks, A's first
            assert queue.request_drain(conversation, organization_id=a_org)
        assert queue.request_drain(b_conversation, organization_id=b_org)
        assert not queue.request_drain(a_conversations[0], organization_id=a_org)  # owed
        a_turns = [asyncio.create_task(drain(c, a_org)) for c in a_conversations]
        await await_until(lambda: model.waiting == 2, what="A's two turns within its share")
        await asyncio.sleep(0)  # the other two have parked and returned
        assert sum(task.done() for task in a_turns) == 2
        await drain(b_conversation, b_org)  # B is not behind A's parked drains
        assert replies_in(engine, b_conversation) == ["Recebi: oi"]
        assert all(replies_in(engine, c) == [] for c in a_conversations)
        model.gate.set()
        await asyncio.gather(*a_turns)
        assert woken == [(c, a_org) for c in a_conversations[2:]]  # the parked, oldest first
        for conversation, org in list(woken):
            await drain(conversation, org)
        for conversation in a_conversations:
            assert replies_in(engine, conversation) == ["Recebi: enxurrada"]
    finally:
        await res.close()
        broker.close()
