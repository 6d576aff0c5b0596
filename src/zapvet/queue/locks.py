"""One drain per conversation at a time, across threads, processes and machines.

Each worker process keeps one PostgreSQL connection for its conversation locks
(`pg_try_advisory_lock`), so an LLM call in flight costs no extra connection, and a killed
process releases all its locks with its connection (at once on a local socket or when the
process dies on a live host; within seconds, by TCP keepalives, when its host vanishes).
Session advisory locks are re-entrant
within a connection, so the keeper also remembers which keys it holds, keeping two drains
of the same process apart, for as long as they run, even across a reconnection. If the lock
connection breaks, its locks are gone for other processes: the drain's commit is
conditional on still-pending rows, so a second drain can never answer twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from zapvet.db import libpq_url
from zapvet.logging import get_logger

#: High 32 bits of the advisory lock key: the conversation locks' keyspace.
CONVERSATION_LOCKS = 7301
#: Key of the scheduler's leader lock (same keyspace, object id 0 is never a conversation).
SCHEDULER_LOCK = CONVERSATION_LOCKS << 32
#: High 32 bits of the organizations' fleet-wide turn slots (`queue.fairness`); the low 32
#: bits are the organization's id (22 bits) and the slot number (10 bits).
ORG_SLOTS = 7302

#: TCP keepalives of the connections that hold advisory locks (a worker's conversation locks,
#: the scheduler's leadership). A process that dies on a live host closes its socket and the
#: server frees its locks at once; a host that vanishes (power, network) sends nothing, and
#: the server would keep the backend, and the locks, for the kernel's default of 2 hours.
#: With these, the server drops it after about idle + interval × count = 11 s, and the client
#: likewise gives up on a vanished server. Unix-socket connections ignore them.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 5, 2, 3

log = get_logger("zapvet.queue.locks")


def lock_conninfo(database_url: str) -> str:
    """`database_url` as a libpq connection string for a connection holding advisory locks:
    keepalives on both ends (the server's are per-session settings, passed as options)."""
    conninfo = libpq_url(database_url)
    server = (
        f"-c tcp_keepalives_idle={KEEPALIVE_IDLE_S}"
        f" -c tcp_keepalives_interval={KEEPALIVE_INTERVAL_S}"
        f" -c tcp_keepalives_count={KEEPALIVE_COUNT}"
    )
    own = conninfo_to_dict(conninfo).get("options")
    options = f"{own} {server}" if own else server
    return make_conninfo(
        conninfo,
        options=options,
        keepalives=1,
        keepalives_idle=KEEPALIVE_IDLE_S,
        keepalives_interval=KEEPALIVE_INTERVAL_S,
        keepalives_count=KEEPALIVE_COUNT,
    )


def lock_key(conversation_id: int) -> int:
    return (CONVERSATION_LOCKS << 32) | conversation_id


def slot_key(organization_id: int, slot: int) -> int:
    return (ORG_SLOTS << 32) | (organization_id << 10) | slot


#: The first of an organization's fleet slots that is free, taken; this process's own are
#: skipped (advisory locks are re-entrant within a session: they would be taken again).
_TAKE_SLOT = (
    "SELECT s FROM generate_series(0, %(share)s - 1) AS s"
    " WHERE s <> ALL(%(taken)s::int[]) AND pg_try_advisory_lock(%(base)s::bigint + s) LIMIT 1"
)


class ConversationLocks:
    """Non-blocking per-conversation locks held on one connection of this process."""

    def __init__(self, database_url: str) -> None:
        self._conninfo = lock_conninfo(database_url)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._mutex = asyncio.Lock()
        self._held: set[int] = set()

    async def _execute(self, sql: str, key: int) -> bool:
        async with self._mutex:
            return bool(await self._run(sql, key))

    async def take_slot(self, organization_id: int, share: int, taken: set[int]) -> int | None:
        """One of the organization's `share` fleet-wide turn slots, held by this process
        until `free_slot` (or its death); None if all are taken."""
        params = {"share": share, "taken": sorted(taken), "base": slot_key(organization_id, 0)}
        async with self._mutex:
            row = await self._run(_TAKE_SLOT, params)
        return None if row is None else int(row)

    async def free_slot(self, organization_id: int, slot: int) -> None:
        await self._execute("SELECT pg_advisory_unlock(%s)", slot_key(organization_id, slot))

    async def _run(self, sql: str, key: Any) -> Any:
        """One lock statement, reconnecting once; raises if the database stays unreachable.

        Never a silent False: a drain told "busy" by a broken connection would leave its
        messages to the sweeper, while an error makes Dramatiq retry the drain.
        """
        try:
            return await self._statement(sql, key)
        except psycopg.OperationalError:
            log.warning("lock connection lost; reconnecting")
        return await self._statement(sql, key)  # a second failure raises

    async def _statement(self, sql: str, params: Any) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            # `_held` is left alone: its drains are still running in this process,
            # and a second drain of theirs must still be refused here.
        try:
            args = params if isinstance(params, dict) else (params,)
            row = await (await self._conn.execute(sql, args)).fetchone()
        except psycopg.OperationalError:
            self._conn = None  # the next statement opens a new one
            raise
        return row[0] if row else None

    async def _try_lock(self, key: int) -> bool:
        # The check, the lock and the record are one step under the mutex, so a drain of this
        # process is refused only by one that holds the database lock: that one re-checks for
        # pending messages after letting go. A refusal on behalf of a drain that was itself
        # refused elsewhere would have nobody re-checking behind it.
        async with self._mutex:
            if key in self._held:
                return False
            got = bool(await self._run("SELECT pg_try_advisory_lock(%s)", key))
            if got:
                self._held.add(key)
            return got

    @asynccontextmanager
    async def hold(self, conversation_id: int) -> AsyncIterator[bool]:
        """Yield True while this drain holds the conversation, False if another one does."""
        key = lock_key(conversation_id)
        got = await self._try_lock(key)
        try:
            yield got
        finally:
            if got:
                try:
                    await self._execute("SELECT pg_advisory_unlock(%s)", key)
                finally:  # even if the database is gone: its session, and the lock, went with it
                    self._held.discard(key)

    async def close(self) -> None:
        async with self._mutex:
            if self._conn is not None and not self._conn.closed:
                await self._conn.close()
            self._conn = None
