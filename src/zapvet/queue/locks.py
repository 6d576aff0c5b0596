"""One drain per conversation at a time, across threads, processes and machines.

Each worker process keeps one PostgreSQL connection for its conversation locks
(`pg_try_advisory_lock`), so an LLM call in flight costs no extra connection, and a killed
process releases all its locks with its connection. Session advisory locks are re-entrant
within a connection, so the keeper also remembers which keys it holds, keeping two drains
of the same process apart, for as long as they run, even across a reconnection. If the lock
connection breaks, its locks are gone for other processes: the drain's commit is
conditional on still-pending rows, so a second drain can never answer twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg

from zapvet.db import libpq_url
from zapvet.logging import get_logger

#: High 32 bits of the advisory lock key: the conversation locks' keyspace.
CONVERSATION_LOCKS = 7301
#: Key of the scheduler's leader lock (same keyspace, object id 0 is never a conversation).
SCHEDULER_LOCK = CONVERSATION_LOCKS << 32

log = get_logger("zapvet.queue.locks")


def lock_key(conversation_id: int) -> int:
    return (CONVERSATION_LOCKS << 32) | conversation_id


class ConversationLocks:
    """Non-blocking per-conversation locks held on one connection of this process."""

    def __init__(self, database_url: str) -> None:
        self._conninfo = libpq_url(database_url)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._mutex = asyncio.Lock()
        self._held: set[int] = set()

    async def _execute(self, sql: str, key: int) -> bool:
        async with self._mutex:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True
                    )
                    # `_held` is left alone: its drains are still running in this process,
                    # and a second drain of theirs must still be refused here.
                try:
                    row = await (await self._conn.execute(sql, (key,))).fetchone()
                    return bool(row and row[0])
                except psycopg.OperationalError:
                    log.warning("lock connection lost", attempt=attempt)
                    self._conn = None
            return False

    @asynccontextmanager
    async def hold(self, conversation_id: int) -> AsyncIterator[bool]:
        """Yield True while this drain holds the conversation, False if another one does."""
        key = lock_key(conversation_id)
        if key in self._held:
            yield False
            return
        self._held.add(key)
        got = False
        try:
            got = await self._execute("SELECT pg_try_advisory_lock(%s)", key)
            yield got
        finally:
            try:
                if got:
                    await self._execute("SELECT pg_advisory_unlock(%s)", key)
            finally:  # even if the database is gone: its session, and the lock, went with it
                self._held.discard(key)

    async def close(self) -> None:
        async with self._mutex:
            if self._conn is not None and not self._conn.closed:
                await self._conn.close()
            self._conn = None
