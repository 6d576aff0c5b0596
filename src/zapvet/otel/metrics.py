"""Metric counters shared by every process through Redis (exposition.py renders them).

Workers and the bridge add to one Redis hash per queue namespace, so `GET /metrics` on any
bridge sees every worker process's jobs: N worker processes need no port each and no
multiprocess directory. Labels are fixed, low-cardinality words, never personal data.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import redis
import redis.asyncio as aioredis
from opentelemetry.instrumentation.utils import suppress_instrumentation

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, math.inf)


def key(namespace: str) -> str:
    return f"{namespace}:metrics"


def field(kind: str, name: str, labels: dict[str, str], bucket: str = "") -> str:
    pairs = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f"{kind}|{name}|{pairs}|{bucket}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Counting is not part of the work: no spans for it, and no failure either."""
    with suppress_instrumentation(), contextlib.suppress(redis.RedisError):
        yield


def _bucket(seconds: float) -> str:
    return next(str(edge) for edge in BUCKETS if seconds <= edge)


def count(
    client: redis.Redis, namespace: str, name: str, labels: dict[str, str], amount: int = 1
) -> None:
    with _quiet():  # metrics never fail the work they describe
        client.hincrby(key(namespace), field("c", name, labels), amount)


def observe(
    client: redis.Redis, namespace: str, name: str, labels: dict[str, str], seconds: float
) -> None:
    with _quiet():
        pipe = client.pipeline()
        pipe.hincrby(key(namespace), field("h", name, labels, _bucket(seconds)), 1)
        pipe.hincrbyfloat(key(namespace), field("s", name, labels), seconds)
        pipe.execute()


async def acount(
    client: aioredis.Redis, namespace: str, name: str, labels: dict[str, str], amount: int = 1
) -> None:
    with _quiet():
        await client.hincrby(key(namespace), field("c", name, labels), amount)


class JobMetrics(dramatiq.Middleware):
    """Jobs processed, failed, retried and skipped, and how long each took, per actor."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: Any, message: Any) -> None:
        self._started[message.message_id] = time.perf_counter()

    def after_process_message(
        self,
        broker: Any,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        started = self._started.pop(message.message_id, None)
        actor = message.actor_name
        # Retries has decided by now (this middleware sits before it): failed means for good.
        outcome = "processed" if exception is None else "failed" if message.failed else "retried"
        count(
            self.client, self.namespace, "zapvet_jobs_total", {"actor": actor, "outcome": outcome}
        )
        if started is not None:
            observe(
                self.client,
                self.namespace,
                "zapvet_job_duration_seconds",
                {"actor": actor},
                time.perf_counter() - started,
            )

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self._started.pop(message.message_id, None)
        # The poison guard fails what it skips; other skips (age limit) are just skipped.
        outcome = "failed" if message.failed else "skipped"
        labels = {"actor": message.actor_name, "outcome": outcome}
        count(self.client, self.namespace, "zapvet_jobs_total", labels)
