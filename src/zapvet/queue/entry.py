"""What each Dramatiq worker process imports (`dramatiq zapvet.queue.entry`): the wiring.

`zapvet worker` resolves the database and Redis URLs (starting embedded servers if needed)
and passes them down; this module builds the broker, declares the actors, and leaves the
process's resources (pools, graphs, HTTP client) to be built inside the worker's event loop
on first use. It refuses to start without a model endpoint, naming the missing variable.
"""

from __future__ import annotations

from multiprocessing import util as multiprocessing_util

import dramatiq
import redis.asyncio as aioredis

from zapvet.config import load_settings
from zapvet.errors import ConfigError
from zapvet.llm.openai import build_chat_model
from zapvet.logging import setup_logging
from zapvet.media.prepare import MediaSetup
from zapvet.otel.tracing import flush_spans, setup_tracing
from zapvet.queue.actors import ResourceHolder, declare
from zapvet.queue.broker import build_broker
from zapvet.queue.fairness import Shares
from zapvet.queue.middleware import Lifecycle
from zapvet.queue.resources import build_resources

#: A turn holds a pooled connection only for its short queries, never across the model call,
#: so the pool need not grow with the threads (256 by default): bursts wait on the pool.
DB_POOL_LIMIT = 32

settings = load_settings()
setup_logging(settings)
# Spans are flushed by TracePropagation when the worker stops. Forked workers skip atexit,
# so a worker killed by a second SIGTERM flushes through multiprocessing's exit finalizers.
setup_tracing(settings, "zapvet-worker")
multiprocessing_util.Finalize(None, flush_spans, exitpriority=10)
if settings.database_url is None or settings.redis_url is None:
    raise ConfigError(
        "DATABASE_URL", "workers need DATABASE_URL and REDIS_URL (zapvet worker sets them)"
    )
build_chat_model(settings)  # fails now, with the variable's name, rather than on the first message
_database_url = settings.database_url
_redis_url = settings.redis_url

broker = build_broker(settings.redis_url, namespace=settings.queue_namespace)
dramatiq.set_broker(broker)
holder = ResourceHolder(
    lambda: build_resources(
        _database_url,
        lambda: build_chat_model(settings),
        pool_size=min(settings.worker_threads, DB_POOL_LIMIT) + 4,
        media=MediaSetup.from_settings(
            settings, redis=aioredis.Redis.from_url(_redis_url, socket_timeout=5)
        ),
    )
)
broker.add_middleware(Lifecycle(holder.close))
shares = Shares(per_process=settings.org_turns_per_process, fleet=settings.org_turns_in_flight)
queue = declare(broker, holder.get, shares)
