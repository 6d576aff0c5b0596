"""Metric counters shared by every process through Redis (exposition.py renders them).

Workers (`queue/job_metrics.py`) and the bridge add to one Redis hash per queue namespace,
so `GET /metrics` on any bridge sees every worker process's jobs: N worker processes need
no port each and no multiprocess directory. Labels are fixed, low-cardinality words, never
personal data.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import redis
import redis.asyncio as aioredis
from opentelemetry.instrumentation.utils import suppress_instrumentation

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, math.inf)

#: Counters exposed at 0 before anything adds to them, so a dashboard's rate() has a series
#: from the first scrape and docs/metrics.md's table matches `GET /metrics` on a fresh install.
ZERO_FILLED: dict[str, tuple[dict[str, str], ...]] = {
    "zapvet_media_total": tuple(
        {"kind": kind, "outcome": outcome}
        for kind in ("audio", "image", "video", "document", "sticker")
        for outcome in ("ok", "unavailable", "transient", "too_large")
    ),
    "zapvet_transcription_seconds_total": ({},),
    "zapvet_transcription_failures_total": ({},),
}


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
    client: redis.Redis,
    namespace: str,
    name: str,
    labels: dict[str, str],
    seconds: float,
    *,
    counted: tuple[str, dict[str, str]] | None = None,
) -> None:
    """Add `seconds` to histogram `name`; with `counted`, also add 1 to that counter, in the
    same round trip (no MULTI: each field is its own atomic increment)."""
    with _quiet():
        pipe = client.pipeline(transaction=False)
        if counted is not None:
            pipe.hincrby(key(namespace), field("c", *counted), 1)
        pipe.hincrby(key(namespace), field("h", name, labels, _bucket(seconds)), 1)
        pipe.hincrbyfloat(key(namespace), field("s", name, labels), seconds)
        pipe.execute()


async def acount(
    client: aioredis.Redis, namespace: str, name: str, labels: dict[str, str], amount: int = 1
) -> None:
    with _quiet():
        await client.hincrby(key(namespace), field("c", name, labels), amount)


async def aadd(
    client: aioredis.Redis, namespace: str, name: str, labels: dict[str, str], amount: float
) -> None:
    """Add a fractional `amount` (seconds of audio, say) to a counter."""
    with _quiet():
        await client.hincrbyfloat(key(namespace), field("c", name, labels), amount)
