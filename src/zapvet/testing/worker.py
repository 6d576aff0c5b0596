"""The worker's drain for `via: drain` scenarios (`evals.worker.Worker`): `queue.drain` on
resources built around the scenario's model and clock, for `zapvet eval` and the tests
alike. The drains it queues go back to the scenario's schedule; replies and alerts stay in
their tables (nothing is sent: there is no one to send them to)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langchain_core.language_models import BaseChatModel

from zapvet.clock import Clock
from zapvet.evals.worker import Drain
from zapvet.queue.drain import drain_conversation
from zapvet.queue.resources import build_resources


class _Queue:
    """`queue.drain.Enqueue` that keeps the drains asked for; sends and alerts stay rows."""

    def __init__(self) -> None:
        self.drains: list[tuple[int, int]] = []

    def drain(
        self, conversation_id: int, *, delay_ms: int = 0, organization_id: int | None = None
    ) -> None:
        self.drains.append((conversation_id, delay_ms))

    def send(self, message_id: int, *, retry: bool = False, refused: str | None = None) -> None:
        pass

    def proactive(self, proactive_id: int) -> None:
        pass

    def webhook(self, delivery_id: int) -> None:
        pass


@asynccontextmanager
async def drain_worker(
    database_url: str, model: BaseChatModel, clock: Clock
) -> AsyncIterator[Drain]:
    """One scenario run's drain; its resources are closed afterwards."""
    res = build_resources(database_url, lambda: model, pool_size=2, clock=clock)
    res.send_inline = False

    async def drain(conversation_id: int) -> list[tuple[int, int]]:
        queue = _Queue()
        await drain_conversation(res, queue, conversation_id)
        return queue.drains

    try:
        yield drain
    finally:
        await res.close()
