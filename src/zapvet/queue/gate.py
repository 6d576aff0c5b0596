"""Turns side by side, except a suspect one: a batch whose earlier turns never finished twice.

A message that kills its worker process (a segfault, the OOM killer) also kills every turn
that process was running, and those come back with it, over and over. After one crash they
run side by side again (a plain kill or deploy should recover at full speed); a batch that
died twice is a suspect and runs alone in its process, so that if it dies again, it dies
alone: the batches merely caught in the earlier crashes finish (with at most three starts,
under the drain's limit), and only the poison's own start count grows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class TurnGate:
    """A per-process readers–writer gate: ordinary turns share it, suspects take it alone."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._running = 0
        self._alone = False
        self._waiting_alone = 0

    @asynccontextmanager
    async def enter(self, *, alone: bool) -> AsyncIterator[None]:
        """Hold the gate for one turn; `alone` waits until no other turn runs here."""
        async with self._changed:
            if alone:
                self._waiting_alone += 1
                try:
                    await self._changed.wait_for(lambda: self._running == 0 and not self._alone)
                finally:
                    self._waiting_alone -= 1
                self._alone = True
            else:  # a suspect waiting goes first, so a busy process cannot starve it
                await self._changed.wait_for(lambda: not self._alone and not self._waiting_alone)
            self._running += 1
        try:
            yield
        finally:
            async with self._changed:
                self._running -= 1
                self._alone = self._alone and not alone
                self._changed.notify_all()
