"""The scheduler: one leader, no double sends from two schedulers, and the sweeper's rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import SAO_PAULO, libpq_url, start_conversation
from tests.fixtures_day import add
from tests.pipeline.conftest import rows, scalar
from tests.pipeline.support import Recorder, await_until
from zapvet import db
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import AISettings, Message, Organization, Resource, Service
from zapvet.queue import scheduler
from zapvet.queue.locks import (
    CONVERSATION_LOCKS,
    KEEPALIVE_IDLE_S,
    ConversationLocks,
    lock_conninfo,
)
from zapvet.queue.outbox import SENDING_LEASE, send_outgoing, stage_proactive
from zapvet.queue.resources import Resources, build_resources
from zapvet.queue.scheduler import (
    RETRY_WAIT,
    SWEEP_AFTER,
    SWEEP_MARGIN,
    Leadership,
    Recently,
    tick,
)
from zapvet.testing.gateways import FakeEvolutionAPI

pytestmark = pytest.mark.anyio

#: Thursday 26 November 2026, 19:05 in São Paulo: past the example shop's 19:00 summary time,
#: before its 21:00 quiet hours, 40 minutes before Marina's banho (a reminder is due).
EVENING = datetime(2026, 11, 26, 19, 5, tzinfo=SAO_PAULO)
#: The same day at 10:00: nothing proactive is due, only the sweeper has work.
MORNING = datetime(2026, 11, 26, 10, 0, tzinfo=SAO_PAULO)
MARINA = "5511977776666"
OWNER = "5511988887777"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.build_async_engine(database_url, pool_size=5)
    yield db.async_session_maker(engine)
    await engine.dispose()


@pytest.fixture
def evening_banho(session: Session, petfeliz: Organization) -> None:
    banho = session.exec(select(Service).where(Service.name == "Banho")).one()
    carla = session.exec(select(Resource).where(Resource.name == "Carla")).one()
    add(
        session,
        petfeliz,
        MARINA,
        "Marina",
        banho,
        carla,
        EVENING + timedelta(minutes=40),
        "scheduled",
    )
    session.commit()


@pytest.fixture
async def workers(database_url: str) -> AsyncIterator[tuple[Resources, Resources]]:
    """Two workers' resources (own pools) whose clock reads EVENING."""
    pair = tuple(
        build_resources(database_url, ScriptedChatModel, pool_size=4, clock=lambda: EVENING)
        for _ in range(2)
    )
    yield pair[0], pair[1]
    for res in pair:
        await res.close()


async def stage_and_send_from_both(
    workers: tuple[Resources, Resources], proactive_ids: list[int]
) -> list[int]:
    """Each enqueued id in turn staged by both workers at once (two deliveries of one job),
    then each staged row sent the same way, twice; the outbox ids staged."""
    outbox: list[int] = []
    for proactive_id in proactive_ids:
        staged = await asyncio.gather(*(stage_proactive(res, proactive_id) for res in workers))
        outbox += [message_id for message_id in staged if message_id is not None]
    for _ in range(2):
        for message_id in outbox:
            await asyncio.gather(
                *(send_outgoing(res, message_id, last_attempt=True) for res in workers)
            )
    return outbox


def proactive_rows(engine: Engine) -> list[tuple[object, ...]]:
    return rows(
        engine, "SELECT id, message_type, status FROM aurora_proactive_messages ORDER BY id"
    )


@pytest.mark.usefixtures("evening_banho")
async def test_scheduler_two_running_at_once_send_each_proactive_message_once(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    engine: Engine,
    gateway: FakeEvolutionAPI,
    workers: tuple[Resources, Resources],
) -> None:
    stop = asyncio.Event()
    recorders = (Recorder(), Recorder())
    runs = [
        asyncio.create_task(
            scheduler.run(
                database_url, sessions, recorder, clock=lambda: EVENING, stop=stop, interval_s=0.02
            )
        )
        for recorder in recorders
    ]
    try:
        # Until the leader has enqueued both messages three times (three ticks at least).
        await await_until(
            lambda: any(len(r.proactive_ids) >= 6 for r in recorders),
            what="the leader to tick three times",
        )
    finally:
        stop.set()
        await asyncio.gather(*runs)
    followers = [r for r in recorders if not r.proactive_ids]
    assert len(followers) == 1  # only the leader ever ticked
    (leader,) = [r for r in recorders if r.proactive_ids]
    scheduled = proactive_rows(engine)
    assert sorted(str(kind) for _, kind, _ in scheduled) == [
        "appointment_reminder",
        "daily_summary",
    ]
    assert set(leader.proactive_ids) == {pid for pid, _, _ in scheduled}

    outbox = await stage_and_send_from_both(workers, leader.proactive_ids)
    assert len(outbox) == 2  # one outbox row per proactive message, however often enqueued
    per_proactive = rows(
        engine,
        "SELECT meta->>'proactive_id', count(*) FROM messages "
        "WHERE direction='outgoing' GROUP BY 1 ORDER BY 1",
    )
    assert per_proactive == sorted((str(pid), 1) for pid, _, _ in scheduled)
    assert sorted(sent.chat_id for sent in gateway.sent) == [MARINA, OWNER]
    assert {status for _, _, status in proactive_rows(engine)} == {"sent"}


@pytest.mark.usefixtures("evening_banho")
async def test_scheduler_two_bare_ticks_at_once_schedule_and_send_once(
    database_url: str,
    engine: Engine,
    gateway: FakeEvolutionAPI,
    workers: tuple[Resources, Resources],
) -> None:
    # Without the leader lock (it failed, or two schedulers both believe they lead).
    recorders = (Recorder(), Recorder())
    reports = await asyncio.gather(
        *(tick(res.sessions, rec, EVENING) for res, rec in zip(workers, recorders, strict=True))
    )
    assert sum(r.reminders for r in reports) == 1 and sum(r.summaries for r in reports) == 1
    enqueued = recorders[0].proactive_ids + recorders[1].proactive_ids
    assert len(set(enqueued)) == 2
    outbox = await stage_and_send_from_both(workers, enqueued)
    assert len(outbox) == 2
    assert scalar(engine, "SELECT count(*) FROM messages WHERE direction='outgoing'") == 2
    assert sorted(sent.chat_id for sent in gateway.sent) == [MARINA, OWNER]


def lock_holder(conninfo: str) -> int | None:
    """The backend pid holding the scheduler's leader lock, if any."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE d.datname = current_database() AND l.locktype = 'advisory' "
            "AND l.granted AND l.classid = %s AND l.objid = 0",
            (CONVERSATION_LOCKS,),
        ).fetchone()
    return None if row is None else int(row[0])


async def test_leadership_is_exclusive_and_passes_on_when_the_leader_goes(
    database_url: str,
) -> None:
    first, second, third = (Leadership(database_url) for _ in range(3))
    try:
        assert await first.acquire()
        assert not await second.acquire()
        assert await first.acquire()  # the leader keeps leading
        await first.close()
        assert await second.acquire()
        assert not await third.acquire()

        # A leader whose connection dies (a killed process) loses the lock with it.
        conninfo = libpq_url(database_url)
        holder = lock_holder(conninfo)
        assert holder is not None
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (holder,))
        await take_over(third)
        assert not await second.acquire()  # the old leader notices and follows
        assert not await second.acquire()
    finally:
        for leadership in (first, second, third):
            await leadership.close()


async def take_over(leadership: Leadership, *, attempts: int = 500) -> None:
    """Acquire, retrying while the terminated backend is still going away (a hang guard)."""
    for _ in range(attempts):
        if await leadership.acquire():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("the lock never passed on")


def outbox_row(
    session: Session,
    conversation_id: int,
    org_id: int,
    status: str,
    age: timedelta,
    attempts: int = 0,
) -> int:
    stamp = MORNING - age
    message = Message(
        organization_id=org_id,
        conversation_id=conversation_id,
        direction="outgoing",
        content="Olá!",
        from_me=True,
        sent_by_ai=True,
        status=status,  # type: ignore[arg-type]
        attempts=attempts,
        message_at=stamp,
        created_at=stamp,
        updated_at=stamp,
    )
    session.add(message)
    session.commit()
    assert message.id is not None
    return message.id


def incoming_row(
    session: Session,
    conversation_id: int,
    org_id: int,
    age: timedelta,
    meta: dict[str, object] | None = None,
) -> None:
    stamp = MORNING - age
    session.add(
        Message(
            organization_id=org_id,
            conversation_id=conversation_id,
            direction="incoming",
            content="Oi",
            status="pending",
            message_at=stamp,
            meta=meta,
            created_at=stamp,
            updated_at=stamp,
        )
    )
    session.commit()


def debounce_of(session: Session, org: Organization) -> timedelta:
    settings = session.get(AISettings, org.id)
    assert settings is not None
    return timedelta(seconds=settings.debounce_seconds)


async def test_tick_re_enqueues_outbox_rows_left_pending_or_sending(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    org_id = petfeliz.id or 0
    conversation_id = start_conversation(session, petfeliz, MARINA).conversation_id
    second = timedelta(seconds=1)

    def row(status: str, age: timedelta) -> int:
        return outbox_row(session, conversation_id, org_id, status, age)

    left_pending = row("pending", SWEEP_MARGIN + second)  # never tried: its job is late
    row("pending", SWEEP_MARGIN - second)  # just written: its send job is still on its way

    def retried(age: timedelta) -> int:  # failed once, back to pending for a retry
        return outbox_row(session, conversation_id, org_id, "pending", age, attempts=1)

    retry_overdue = retried(SWEEP_MARGIN + RETRY_WAIT + second)
    retried(SWEEP_MARGIN + RETRY_WAIT - second)  # its retry may still be on its way
    stuck_sending = row("sending", SENDING_LEASE + second)
    row("sending", SENDING_LEASE - second)  # a live worker may still be sending it
    row("sent", SENDING_LEASE * 10)
    row("failed", SENDING_LEASE * 10)
    recorder = Recorder()
    report = await tick(sessions, recorder, MORNING)
    assert sorted(recorder.sends) == sorted([left_pending, retry_overdue, stuck_sending])
    assert report.sends == 3
    assert recorder.drains == [] and recorder.proactive_ids == []


async def test_tick_leaves_a_conversation_alone_while_a_drain_holds_it(
    database_url: str,
    session: Session,
    petfeliz: Organization,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    org_id = petfeliz.id or 0
    held = start_conversation(session, petfeliz, MARINA).conversation_id
    fresh = start_conversation(session, petfeliz, "5511966665555").conversation_id
    window = debounce_of(session, petfeliz) + SWEEP_MARGIN
    incoming_row(session, held, org_id, window + timedelta(seconds=1))
    incoming_row(session, fresh, org_id, window - timedelta(seconds=1))  # its drain is due
    locks = ConversationLocks(database_url)
    try:
        async with locks.hold(held) as holding:
            assert holding
            during = Recorder()
            assert (await tick(sessions, during, MORNING)).drains == 0
            assert during.drains == []
        after = Recorder()
        assert (await tick(sessions, after, MORNING)).drains == 1
        assert after.drains == [held]
    finally:
        await locks.close()


async def test_tick_ignores_drain_locks_of_another_database_on_the_server(
    empty_database_url: str,
    session: Session,
    petfeliz: Organization,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Conversation ids repeat across databases; a lock in another one says nothing about ours.
    stuck = start_conversation(session, petfeliz, MARINA).conversation_id
    incoming_row(session, stuck, petfeliz.id or 0, SWEEP_AFTER + timedelta(seconds=1))
    elsewhere = ConversationLocks(empty_database_url)
    try:
        async with elsewhere.hold(stuck) as holding:
            assert holding
            recorder = Recorder()
            await tick(sessions, recorder, MORNING)
            assert recorder.drains == [stuck]
    finally:
        await elsewhere.close()


async def test_tick_waits_for_each_organizations_debounce_window(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = session.get(AISettings, petfeliz.id)
    assert settings is not None
    settings.debounce_seconds = 30  # a slow typist's shop
    session.add(settings)
    session.commit()
    org_id, second = petfeliz.id or 0, timedelta(seconds=1)
    window = timedelta(seconds=30) + SWEEP_MARGIN
    late = start_conversation(session, petfeliz, MARINA).conversation_id
    waiting = start_conversation(session, petfeliz, "5511966665555").conversation_id
    incoming_row(session, late, org_id, window + second)
    incoming_row(session, waiting, org_id, window - second)  # its drain is not due yet
    recorder = Recorder()
    await tick(sessions, recorder, MORNING)
    assert recorder.drains == [late]


async def test_tick_measures_the_window_from_a_bursts_newest_message(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # The drain waits for the burst to end: its first message being old says nothing.
    org_id, second = petfeliz.id or 0, timedelta(seconds=1)
    window = debounce_of(session, petfeliz) + SWEEP_MARGIN
    burst = start_conversation(session, petfeliz, MARINA).conversation_id
    incoming_row(session, burst, org_id, window * 5)
    incoming_row(session, burst, org_id, window - second)
    recorder = Recorder()
    await tick(sessions, recorder, MORNING)
    assert recorder.drains == []
    assert (await tick(sessions, recorder, MORNING + 2 * second)).drains == 1
    assert recorder.drains == [burst]


async def test_tick_leaves_a_media_retry_its_wait(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # A drain that deferred itself to fetch a voice note again comes back on its own.
    org_id, second = petfeliz.id or 0, timedelta(seconds=1)
    conversation = start_conversation(session, petfeliz, MARINA).conversation_id
    retrying: dict[str, object] = {"media": {"state": "retrying", "attempts": 3}}
    incoming_row(session, conversation, org_id, SWEEP_MARGIN + RETRY_WAIT - second, retrying)
    recorder = Recorder()
    await tick(sessions, recorder, MORNING)
    assert recorder.drains == []
    await tick(sessions, recorder, MORNING + 2 * second)
    assert recorder.drains == [conversation]


class FlakyQueue(Recorder):
    """A queue that refuses its first `failures` enqueues (Redis is away)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def drain(
        self, conversation_id: int, *, delay_ms: int = 0, organization_id: int | None = None
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Redis is away")
        super().drain(conversation_id, delay_ms=delay_ms)


async def test_sweeper_re_enqueues_work_once_per_period_and_retries_failed_enqueues(
    session: Session, petfeliz: Organization, sessions: async_sessionmaker[AsyncSession]
) -> None:
    org_id = petfeliz.id or 0
    stuck = start_conversation(session, petfeliz, MARINA).conversation_id
    incoming_row(session, stuck, org_id, SWEEP_AFTER)
    unsent = outbox_row(session, stuck, org_id, "pending", SWEEP_AFTER)

    queue = FlakyQueue(failures=1)
    hour = Recently(every_s=3600)
    with pytest.raises(ConnectionError):
        await tick(sessions, queue, MORNING, recently=hour)
    first = await tick(sessions, queue, MORNING, recently=hour)  # the refused drain again
    assert (first.drains, first.sends) == (1, 1)
    again = await tick(sessions, queue, MORNING, recently=hour)  # still queued: left alone
    assert (again.drains, again.sends) == (0, 0)
    assert queue.drains == [stuck] and queue.sends == [unsent]

    every_tick = Recently(every_s=0)
    for _ in range(2):
        await tick(sessions, queue, MORNING, recently=every_tick)
    assert queue.drains == [stuck] * 3 and queue.sends == [unsent] * 3


def test_lock_connections_ask_the_server_to_drop_a_vanished_peer(database_url: str) -> None:
    # A worker or scheduler host that vanishes sends no FIN: without keepalives its backend,
    # and the conversation or leader locks it holds, would outlive it by hours.
    with_options = f"{database_url}{'&' if '?' in database_url else '?'}options=-cwork_mem%3D8MB"
    settings = psycopg.conninfo.conninfo_to_dict(lock_conninfo(with_options))
    assert settings["keepalives"] == "1" and settings["keepalives_idle"] == str(KEEPALIVE_IDLE_S)
    options = str(settings["options"])
    assert "-cwork_mem=8MB" in options  # the operator's own options are kept
    assert f"-c tcp_keepalives_idle={KEEPALIVE_IDLE_S}" in options
    with psycopg.connect(lock_conninfo(with_options)) as conn:  # the server accepts them
        assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
