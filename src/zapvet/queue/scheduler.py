"""The scheduler: proactive messages, and the sweeper that makes Redis's contents disposable.

Every tick (default 5 s), the process holding the leader lock schedules reminders and daily
summaries, enqueues due proactive messages, re-enqueues conversations whose messages wait
unanswered with no drain holding them (a lost queue message, a flushed Redis, a killed
worker), re-enqueues outbox rows left unsent, and trims the dead-letter queue. A second
scheduler waits for the lock; if it ever acts too, scheduling and claiming are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.clock import Clock
from zapvet.db import libpq_url
from zapvet.logging import get_logger
from zapvet.proactive.delivery import due_ids
from zapvet.proactive.planning import schedule_daily_summaries, schedule_reminders
from zapvet.queue import dlq
from zapvet.queue.drain import Enqueue
from zapvet.queue.locks import CONVERSATION_LOCKS, SCHEDULER_LOCK
from zapvet.queue.outbox import SENDING_LEASE

#: Pending inbound rows older than this, with no drain holding their conversation, are
#: re-enqueued (longer than any debounce window, short enough to recover within 30 s).
SWEEP_AFTER = timedelta(seconds=15)
TRIM_EVERY_TICKS = 60

log = get_logger("zapvet.scheduler")

_STUCK_CONVERSATIONS = text(
    """
    SELECT DISTINCT m.conversation_id FROM messages m
     WHERE m.direction = 'incoming' AND m.status = 'pending' AND m.created_at < :before
       AND NOT EXISTS (SELECT 1 FROM pg_locks l
                        WHERE l.locktype = 'advisory' AND l.granted
                          AND l.database = (SELECT oid FROM pg_database
                                             WHERE datname = current_database())
                          AND l.classid = :space AND l.objid = m.conversation_id)
    """
)
_STUCK_OUTBOX = text(
    """
    SELECT id FROM messages
     WHERE direction = 'outgoing'
       AND ((status = 'pending' AND updated_at < :before)
            OR (status = 'sending' AND updated_at < :lease))
    """
)


@dataclass
class TickReport:
    reminders: int = 0
    summaries: int = 0
    proactive: int = 0
    drains: int = 0
    sends: int = 0


async def tick(
    sessions: async_sessionmaker[AsyncSession], enqueue: Enqueue, now: datetime
) -> TickReport:
    """One round of scheduling and sweeping (the caller holds the leader lock)."""
    report = TickReport()
    async with sessions() as session, session.begin():
        report.reminders = len(await schedule_reminders(session, now))
    async with sessions() as session, session.begin():
        report.summaries = len(await schedule_daily_summaries(session, now))
    async with sessions() as session:
        due = await due_ids(session, now)
        stuck = (
            await session.exec(  # type: ignore[call-overload]
                _STUCK_CONVERSATIONS,
                params={"before": now - SWEEP_AFTER, "space": CONVERSATION_LOCKS},
            )
        ).all()
        unsent = (
            await session.exec(  # type: ignore[call-overload]
                _STUCK_OUTBOX,
                params={"before": now - SWEEP_AFTER, "lease": now - SENDING_LEASE},
            )
        ).all()
    for proactive_id in due:
        enqueue.proactive(proactive_id)
    for (conversation_id,) in stuck:
        enqueue.drain(conversation_id)
    for (message_id,) in unsent:
        enqueue.send(message_id)
    report.proactive, report.drains, report.sends = len(due), len(stuck), len(unsent)
    return report


class Leadership:
    """The scheduler's leader lock, held on a connection of its own for as long as it lives."""

    def __init__(self, database_url: str) -> None:
        self._conninfo = libpq_url(database_url)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def acquire(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            row = await (
                await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (SCHEDULER_LOCK,))
            ).fetchone()
            return bool(row and row[0])
        except psycopg.OperationalError:
            self._conn = None
            return False

    async def close(self) -> None:
        """Step down: unlock before closing, since a closed connection's backend (and
        its locks) may linger on the server for a moment after the client has left."""
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                await self._conn.execute("SELECT pg_advisory_unlock_all()")
            await self._conn.close()
        self._conn = None


async def run(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    enqueue: Enqueue,
    *,
    clock: Clock,
    stop: asyncio.Event,
    interval_s: float = 5.0,
    dead_letters: tuple[redis.Redis, str] | None = None,
) -> None:
    """Tick every `interval_s` seconds while leader, until `stop` is set."""
    leader = Leadership(database_url)
    ticks = 0
    try:
        while not stop.is_set():
            if await leader.acquire():
                try:
                    report = await tick(sessions, enqueue, clock())
                    if report.drains or report.sends:
                        log.info(
                            "sweeper re-enqueued work", drains=report.drains, sends=report.sends
                        )
                    ticks += 1
                    if dead_letters is not None and ticks % TRIM_EVERY_TICKS == 0:
                        dlq.trim(*dead_letters)
                except Exception:  # the next tick tries again; say what went wrong
                    log.exception("scheduler tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
    finally:
        await leader.close()
