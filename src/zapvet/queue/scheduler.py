"""The scheduler: proactive messages, and the sweeper that makes Redis's contents disposable.

The process holding the leader lock sweeps every second: it enqueues due proactive
messages, re-enqueues conversations whose messages wait unanswered with no drain holding
them (a lost queue message, a flushed Redis, a killed worker), and re-enqueues outbox rows
left unsent; it also claims the webhook deliveries that are due (`webhooks/delivery.py`)
for the delivery actor. "Stuck" is relative to when work was due, not a fixed age: a conversation is
stuck once its organization's debounce window has passed since its newest pending message,
plus `SWEEP_MARGIN` for the queue to deliver the drain; a row the pipeline deferred on
purpose (a media or send retry) gets its retry wait on top. Re-enqueued work is not
enqueued again for one planning interval (5 s by default, the pre-2026-12 cadence), so a
queue that is merely slow is not flooded. Every planning interval it also schedules
reminders and daily summaries (care invitations once a minute: `proactive/care.py`), tells
the owners about WhatsApp instances that went down, and now and then trims the dead-letter
queue. A second scheduler waits for the lock; if it ever acts too, scheduling and claiming
are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.clock import Clock
from zapvet.commands.privacy import enforce_retention
from zapvet.logging import get_logger
from zapvet.media.prepare import RETRY_DELAYS_S as MEDIA_RETRY_DELAYS_S
from zapvet.proactive.care import schedule_care_invitations
from zapvet.proactive.connection import alert_disconnections, announce_recoveries
from zapvet.proactive.delivery import due_ids
from zapvet.proactive.planning import schedule_daily_summaries, schedule_reminders
from zapvet.queue import dlq
from zapvet.queue.drain import Enqueue
from zapvet.queue.locks import CONVERSATION_LOCKS, SCHEDULER_LOCK, lock_conninfo
from zapvet.queue.outbox import SENDING_LEASE
from zapvet.webhooks.delivery import claim_due

#: How late a drain may legitimately take its conversation after the debounce window ends
#: (`fairness.QUEUED_GRACE_MS` keeps a queued drain's owed mark as long):
#: the delay queue fires up to ~1.3 s late (research/dramatiq.md §3) and a worker thread
#: then picks the drain up. Later than this with no drain holding the lock, it is re-enqueued.
SWEEP_MARGIN = timedelta(seconds=3)
#: The debounce assumed for an organization without AI settings (as the drain does).
DEFAULT_DEBOUNCE_S = 3
#: The debounce window's upper bound (`ck_ai_settings_debounce`).
MAX_DEBOUNCE = timedelta(seconds=60)
#: The longest deliberate wait between two attempts at a row: a send's retries
#: (actors._retry_later: 2, 4, 8 s) and a media fetch's (media.prepare: 2, 4, 8 s).
RETRY_WAIT = timedelta(seconds=max(8, *MEDIA_RETRY_DELAYS_S))
#: Older than this, a forgotten row is re-enqueued whatever its organization and state
#: (tests that must see everything swept step their clock past it).
SWEEP_AFTER = MAX_DEBOUNCE + RETRY_WAIT + SWEEP_MARGIN
#: How often the leader looks for stuck work (at most; a shorter `interval_s` wins). Each
#: look is a scan of the partial index of pending rows and of `pg_locks`.
SWEEP_EVERY_S = 1.0
#: How often the dead-letter queue is trimmed.
TRIM_EVERY_S = 300.0
#: How often `[privacy]` retention erases old message contents and transcripts.
RETENTION_EVERY_S = 3600.0
#: How often care invitations are planned: a scan of each care-enabled organization's
#: completed appointments, and invitations are a matter of hours, not seconds.
CARE_EVERY_S = 60.0

log = get_logger("zapvet.scheduler")
#: Which of these conversations have a drain queued or parked (`Fairness.owed`).
Owed = Callable[[Iterable[int]], set[int]]

# Conversations whose newest pending message is older than their organization's debounce
# window plus the margin (the drain waits for the newest arrival, so an older row in a burst
# is not late), whose media retries (if any) are overdue, and that no drain holds. Reads the
# partial index `ix_messages_pending` (pending rows only), never the whole table.
_STUCK_CONVERSATIONS = text(
    """
    SELECT m.conversation_id, min(m.organization_id) FROM messages m
      LEFT JOIN ai_settings s ON s.organization_id = m.organization_id
     WHERE m.direction = 'incoming' AND m.status = 'pending'
     GROUP BY m.conversation_id
    HAVING max(m.created_at) < CAST(:now AS timestamptz) - :margin
             - make_interval(secs => coalesce(max(s.debounce_seconds), :default_debounce))
       AND coalesce(max(m.updated_at) FILTER (WHERE m.meta->'media'->>'state' = 'retrying'),
                    '-infinity') < CAST(:now AS timestamptz) - :margin - :retry_wait
       AND NOT EXISTS (SELECT 1 FROM pg_locks l
                        WHERE l.locktype = 'advisory' AND l.granted
                          AND l.database = (SELECT oid FROM pg_database
                                             WHERE datname = current_database())
                          AND l.classid = :space AND l.objid = m.conversation_id)
    """
)
# Outbox rows never tried whose send job should have run by now, and rows waiting out a
# retry longer than the longest retry wait (the partial index of pending rows again).
_UNSENT_OUTBOX = text(
    """
    SELECT id FROM messages
     WHERE direction = 'outgoing' AND status = 'pending'
       AND updated_at < CASE WHEN attempts = 0 THEN CAST(:fresh AS timestamptz)
                             ELSE CAST(:retried AS timestamptz) END
    """
)
# Rows whose sender died mid-send, past the lease. No index covers `sending` rows, so this
# scans the table: it runs on the planning cadence only, which a 2-minute lease allows.
_LEASED_OUTBOX = text(
    """
    SELECT id FROM messages
     WHERE direction = 'outgoing' AND status = 'sending' AND updated_at < :lease
    """
)


@dataclass
class Recently:
    """What the sweeper enqueued lately, so that work still waiting in a slow queue is not
    enqueued again on every tick; in memory, per leader (a new leader starts afresh)."""

    every_s: float
    _at: dict[Hashable, float] = field(default_factory=dict)

    def due(self, keys: Iterable[Hashable]) -> list[Hashable]:
        """The keys not enqueued within `every_s`."""
        now = time.monotonic()
        self._at = {k: at for k, at in self._at.items() if now - at < self.every_s}
        return [k for k in keys if k not in self._at]

    def enqueued(self, key: Hashable) -> None:
        """Record `key` once it is really enqueued (a failed enqueue is tried next tick)."""
        self._at[key] = time.monotonic()


@dataclass
class TickReport:
    reminders: int = 0
    summaries: int = 0
    care: int = 0
    #: Owners' alerts queued for WhatsApp instances that went down or came back
    #: (`proactive.connection`).
    connections: int = 0
    proactive: int = 0
    drains: int = 0
    sends: int = 0
    #: Webhook deliveries claimed for the delivery actor (due, at the head of their line).
    webhooks: int = 0


async def tick(
    sessions: async_sessionmaker[AsyncSession],
    enqueue: Enqueue,
    now: datetime,
    *,
    plan: bool = True,
    care: bool | None = None,
    recently: Recently | None = None,
    owed: Owed | None = None,
) -> TickReport:
    """One round of sweeping, and of scheduling with `plan` (the caller holds the leader
    lock), care invitations included unless `care` is False (default: with `plan`). With
    `recently`, work enqueued within its period is left to the queue; with `owed`, so are
    conversations whose drain is queued or parked (`queue.fairness`)."""
    report = TickReport()
    if plan:
        async with sessions() as session, session.begin():
            report.reminders = len(await schedule_reminders(session, now))
        async with sessions() as session, session.begin():
            report.summaries = len(await schedule_daily_summaries(session, now))
        async with sessions() as session, session.begin():
            report.connections = len(await alert_disconnections(session, now))
            report.connections += len(await announce_recoveries(session, now))
    if plan if care is None else care:
        async with sessions() as session, session.begin():
            report.care = len(await schedule_care_invitations(session, now))
    async with sessions() as session:
        due = await due_ids(session, now)
        stuck = (
            await session.exec(  # type: ignore[call-overload]
                _STUCK_CONVERSATIONS,
                params={
                    "now": now,
                    "margin": SWEEP_MARGIN,
                    "default_debounce": DEFAULT_DEBOUNCE_S,
                    "retry_wait": RETRY_WAIT,
                    "space": CONVERSATION_LOCKS,
                },
            )
        ).all()
        unsent = (
            await session.exec(  # type: ignore[call-overload]
                _UNSENT_OUTBOX,
                params={"fresh": now - SWEEP_MARGIN, "retried": now - SWEEP_MARGIN - RETRY_WAIT},
            )
        ).all()
        if plan:
            unsent += (
                await session.exec(  # type: ignore[call-overload]
                    _LEASED_OUTBOX, params={"lease": now - SENDING_LEASE}
                )
            ).all()
    async with sessions() as session, session.begin():
        deliveries = await claim_due(session, now)
    for delivery_id in deliveries:  # claimed (leased): not enqueued twice while it holds
        enqueue.webhook(delivery_id)
    report.webhooks = len(deliveries)
    waiting = owed(conversation_id for conversation_id, _ in stuck) if owed and stuck else set()
    organizations = dict(stuck)
    work = [
        *(("proactive", proactive_id) for proactive_id in due),
        *(
            ("drain", conversation_id)
            for conversation_id, _ in stuck
            if conversation_id not in waiting
        ),
        *(("send", message_id) for (message_id,) in unsent),
    ]
    if recently is not None:
        work = recently.due(work)  # type: ignore[assignment]
    for kind, key in work:
        if kind == "proactive":
            enqueue.proactive(key)
            report.proactive += 1
        elif kind == "drain":
            enqueue.drain(key, organization_id=organizations[key])
            report.drains += 1
        else:
            enqueue.send(key)
            report.sends += 1
        if recently is not None:
            recently.enqueued((kind, key))
    return report


class Leadership:
    """The scheduler's leader lock, held on a connection of its own for as long as it lives."""

    def __init__(self, database_url: str) -> None:
        self._conninfo = lock_conninfo(database_url)
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
    owed: Owed | None = None,
) -> None:
    """While leader, until `stop` is set: sweep every `SWEEP_EVERY_S` (or `interval_s` if
    shorter), schedule every `interval_s`, and enqueue the same work at most once per
    `interval_s`."""
    leader = Leadership(database_url)
    every_s = min(SWEEP_EVERY_S, interval_s)
    recently = Recently(interval_s)
    planned = trimmed = retained = cared = float("-inf")
    try:
        while not stop.is_set():
            if await leader.acquire():
                try:
                    plan = time.monotonic() - planned >= interval_s
                    care = plan and time.monotonic() - cared >= CARE_EVERY_S
                    report = await tick(
                        sessions,
                        enqueue,
                        clock(),
                        plan=plan,
                        care=care,
                        recently=recently,
                        owed=owed,
                    )
                    if plan:
                        planned = time.monotonic()
                    if care:
                        cared = time.monotonic()
                    if report.drains or report.sends:
                        log.info(
                            "sweeper re-enqueued work", drains=report.drains, sends=report.sends
                        )
                    if time.monotonic() - retained >= RETENTION_EVERY_S:
                        retained = time.monotonic()
                        async with sessions() as session:
                            erased = await enforce_retention(session, clock())
                        if any(erased.values()):
                            log.info("retention erased old message contents", **erased)
                    if dead_letters is not None and time.monotonic() - trimmed >= TRIM_EVERY_S:
                        trimmed = time.monotonic()
                        dlq.trim(*dead_letters)
                except Exception:  # the next tick tries again; say what went wrong
                    log.exception("scheduler tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)
    finally:
        await leader.close()
