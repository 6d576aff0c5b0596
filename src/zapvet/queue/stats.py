"""Queue depth from Redis, with the seed worker's alerts (Dramatiq keeps no counters)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from prometheus_client.core import GaugeMetricFamily, Metric

from zapvet.queue.broker import QUEUES

#: The seed's alert thresholds (waiting > 100, failed > 50, active = 0 while work waits).
WAITING_ALERT = 100
FAILED_ALERT = 50
_ALERT_TEXT = {
    "waiting_high": f"waiting > {WAITING_ALERT}: workers are overloaded",
    "failed_high": f"failed in the last hour > {FAILED_ALERT}: a systemic problem",
    "no_active_worker": "active = 0 while messages wait: no worker is consuming",
}


@dataclass(frozen=True)
class QueueDepth:
    waiting: int
    active: int
    delayed: int
    dead: int
    failed_last_hour: int


@dataclass(frozen=True)
class QueueStats:
    waiting: int
    active: int
    delayed: int
    dead: int
    failed_last_hour: int
    queues: dict[str, QueueDepth] = field(default_factory=dict)

    @property
    def firing(self) -> dict[str, bool]:
        """Each of the seed's alerts by its metric label, firing or not."""
        return {
            "waiting_high": self.waiting > WAITING_ALERT,
            "failed_high": self.failed_last_hour > FAILED_ALERT,
            "no_active_worker": self.active == 0 and self.waiting > 0,
        }

    @property
    def alerts(self) -> list[str]:
        return [_ALERT_TEXT[name] for name, on in self.firing.items() if on]

    def as_json(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "active": self.active,
            "delayed": self.delayed,
            "dead": self.dead,
            "failed_last_hour": self.failed_last_hour,
            "alerts": self.alerts,
            "queues": {name: asdict(depth) for name, depth in self.queues.items()},
        }


async def queue_stats(client: aioredis.Redis, namespace: str) -> QueueStats:
    """Waiting (listed), active (fetched, unacked), delayed, dead and recently dead messages."""
    now_ms = int(time.time() * 1000)
    depths: dict[str, QueueDepth] = {}
    for queue in QUEUES:
        base = f"{namespace}:{queue}"
        active = 0
        async for key in client.scan_iter(match=f"{namespace}:__acks__.*.{queue}", count=500):
            active += int(await client.scard(key))
        depths[queue] = QueueDepth(
            waiting=int(await client.llen(base)),
            active=active,
            delayed=int(await client.hlen(f"{base}.DQ.msgs")),
            dead=int(await client.zcard(f"{base}.XQ")),
            failed_last_hour=int(await client.zcount(f"{base}.XQ", now_ms - 3_600_000, "+inf")),
        )
    return QueueStats(
        waiting=sum(d.waiting for d in depths.values()),
        active=sum(d.active for d in depths.values()),
        delayed=sum(d.delayed for d in depths.values()),
        dead=sum(d.dead for d in depths.values()),
        failed_last_hour=sum(d.failed_last_hour for d in depths.values()),
        queues=depths,
    )


async def queue_metrics(client: aioredis.Redis, namespace: str) -> list[Metric]:
    """Queue depth and the seed's alerts as Prometheus gauges (for `otel.exposition.render`)."""
    figures = await queue_stats(client, namespace)
    depth = GaugeMetricFamily(
        "zapvet_queue_messages", "messages in the queue", labels=["queue", "state"]
    )
    failed = GaugeMetricFamily(
        "zapvet_queue_failed_last_hour", "dead-lettered in the last hour", labels=["queue"]
    )
    for queue, d in figures.queues.items():
        for state in ("waiting", "active", "delayed", "dead"):
            depth.add_metric([queue, state], getattr(d, state))
        failed.add_metric([queue], d.failed_last_hour)
    alerts = GaugeMetricFamily("zapvet_alert", "the seed worker's alerts", labels=["alert"])
    for alert, on in figures.firing.items():
        alerts.add_metric([alert], 1.0 if on else 0.0)
    return [depth, failed, alerts]
