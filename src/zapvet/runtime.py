"""Process wiring shared by the CLI's long-running commands: bridge state, queue, scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import exc as sa_exc

from zapvet import db
from zapvet.bridge.app import BridgeState
from zapvet.clock import Clock, system_clock
from zapvet.otel.exposition import render
from zapvet.pricing import DEFAULT_TRANSCRIBE_MODEL
from zapvet.queue import scheduler
from zapvet.queue.actors import Queue, declare
from zapvet.queue.broker import NAMESPACE, build_broker, redis_client
from zapvet.queue.replies import reply_stats
from zapvet.queue.resources import Resources
from zapvet.queue.stats import queue_metrics, queue_stats
from zapvet.scheduling.calendar import feed_ics


async def _not_a_worker() -> Resources:
    raise RuntimeError("this process only enqueues; jobs run in `zapvet worker`")


def producer_queue(redis_url: str, *, namespace: str = NAMESPACE) -> Queue:
    """A queue to enqueue on (bridge, scheduler, CLI); its actors never run here."""
    return declare(build_broker(redis_url, namespace=namespace), _not_a_worker)


def bridge_state_factory(
    database_url: str,
    redis_url: str,
    *,
    namespace: str = NAMESPACE,
    pool_size: int = 32,
    clock: Clock = system_clock,
    queue: Queue | None = None,
    transcribe_model: str = DEFAULT_TRANSCRIBE_MODEL,
) -> Callable[[], Awaitable[BridgeState]]:
    """Builds the bridge's state inside the server's event loop, at startup."""

    async def make() -> BridgeState:
        engine = db.build_async_engine(database_url, pool_size=pool_size)
        client = aioredis.Redis.from_url(redis_url, socket_timeout=5)

        async def close() -> None:
            await client.aclose()
            await engine.dispose()

        sessions = db.async_session_maker(engine)

        async def stats() -> dict[str, Any]:
            figures = (await queue_stats(client, namespace)).as_json()
            try:
                async with sessions() as session:
                    figures["replies"] = (await reply_stats(session, clock())).as_json()
            except sa_exc.SQLAlchemyError:  # the queue's figures still answer
                figures["replies"] = None
            return figures

        async def metrics() -> bytes:
            gauges = await queue_metrics(client, namespace)
            return await render(
                sessions, client, namespace, queue=gauges, transcribe_model=transcribe_model
            )

        async def calendar(token: str) -> bytes | None:
            async with sessions() as session:
                return await feed_ics(session, token, clock())

        return BridgeState(
            sessions=sessions,
            calendar=calendar,
            enqueue=queue or producer_queue(redis_url, namespace=namespace),
            redis=client,
            namespace=namespace,
            stats=stats,
            metrics=metrics,
            clock=clock,
            close=close,
        )

    return make


async def run_scheduler(
    database_url: str,
    redis_url: str,
    *,
    stop: asyncio.Event,
    namespace: str = NAMESPACE,
    interval_s: float = 5.0,
    clock: Clock = system_clock,
    queue: Any = None,
) -> None:
    engine = db.build_async_engine(database_url, pool_size=4)
    queue = queue or producer_queue(redis_url, namespace=namespace)
    try:
        await scheduler.run(
            database_url,
            db.async_session_maker(engine),
            queue,
            clock=clock,
            stop=stop,
            interval_s=interval_s,
            dead_letters=(redis_client(redis_url), namespace),
            owed=queue.fairness.owed if isinstance(queue, Queue) else None,
        )
    finally:
        await engine.dispose()
