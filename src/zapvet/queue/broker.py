"""The Dramatiq broker on Redis, with its middleware, built by entrypoints (never at import)."""

from __future__ import annotations

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage, Retries

from zapvet.queue.job_metrics import JobMetrics
from zapvet.queue.middleware import DaemonAsyncIO, LogContext, PoisonGuard
from zapvet.queue.propagation import TracePropagation

NAMESPACE = "zapvet"
INBOUND, OUTBOUND, PROACTIVE, WEBHOOKS = "inbound", "outbound", "proactive", "webhooks"
QUEUES = (INBOUND, OUTBOUND, PROACTIVE, WEBHOOKS)
#: A dead worker's messages return after this (Dramatiq's default 60 s plus a random
#: maintenance wait measured at up to 15 minutes; research/dramatiq.md §2). Recovery does
#: not wait for it: the sweeper re-enqueues a killed worker's conversations a few seconds
#: after the kill (queue/scheduler.py), and the redelivered drains then find nothing to do.
#: Shorter would gain nothing and would redeliver messages of live workers that are slow to
#: call Redis (dramatiq#692).
HEARTBEAT_TIMEOUT_MS = 15_000
#: Per-million chance that a Redis call runs maintenance (requeues dead workers' messages).
MAINTENANCE_CHANCE = 50_000
DEAD_MESSAGE_TTL_MS = 7 * 86_400_000


#: Connections one process's client may open. redis-py's own pool fails with "Too many
#: connections" past 100, which a worker's 256 threads reached (docs/benchmarks.md); this pool
#: makes a thread wait for a free connection instead.
MAX_REDIS_CONNECTIONS = 64


def redis_client(redis_url: str) -> redis.Redis:
    # Passed as a client because RedisBroker(url=…) silently drops extra connection options.
    pool = redis.BlockingConnectionPool.from_url(
        redis_url,
        max_connections=MAX_REDIS_CONNECTIONS,
        timeout=10,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)


def build_broker(
    redis_url: str, *, namespace: str = NAMESPACE, max_deliveries: int = 5
) -> RedisBroker:
    client = redis_client(redis_url)
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        client=client,
        namespace=namespace,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
        dead_message_ttl=DEAD_MESSAGE_TTL_MS,
    )
    # Before Retries, so that its after-hooks (run in reverse order) see Retries' verdict.
    broker.add_middleware(JobMetrics(client, namespace), before=Retries)
    broker.add_middleware(TracePropagation())
    broker.add_middleware(LogContext())
    broker.add_middleware(DaemonAsyncIO())
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(PoisonGuard(client, namespace, max_deliveries))
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker
