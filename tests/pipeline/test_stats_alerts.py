"""`zapvet stats` alerts at the seed's thresholds: waiting > 100 and failed last hour > 50."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import redis
import redis.asyncio as aioredis

from tests.pipeline.support import new_namespace, purge, zapvet
from tests.pipeline.test_operations import bury
from zapvet.embedded import ServiceUrls
from zapvet.queue.actors import Queue, declare
from zapvet.queue.broker import INBOUND, OUTBOUND, PROACTIVE, build_broker
from zapvet.queue.resources import Resources
from zapvet.queue.stats import FAILED_ALERT, WAITING_ALERT, QueueStats, queue_stats

WAITING = "waiting > 100: workers are overloaded"
FAILED = "failed in the last hour > 50: a systemic problem"
NO_WORKER = "active = 0 while messages wait: no worker is consuming"


@dataclass
class Queues:
    """Real queues on Redis with nobody consuming them."""

    queue: Queue
    redis_url: str
    database_url: str
    namespace: str

    def stats(self) -> QueueStats:
        async def read() -> QueueStats:
            client = aioredis.Redis.from_url(self.redis_url)
            try:
                return await queue_stats(client, self.namespace)
            finally:
                await client.aclose()

        return asyncio.run(read())

    def cli(self, *args: str) -> str:
        done = zapvet(
            "stats",
            *args,
            database_url=self.database_url,
            redis_url=self.redis_url,
            namespace=self.namespace,
        )
        assert done.exit_code == 0, done.output
        return done.stdout

    def bury(self, queue: str, how_many: int, died: datetime) -> None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            for number in range(how_many):
                bury(client, self.namespace, queue, number, died - timedelta(seconds=number))
        finally:
            client.close()


@pytest.fixture
def queues(services: ServiceUrls, database_url: str) -> Iterator[Queues]:
    namespace = new_namespace()
    broker = build_broker(services.redis_url, namespace=namespace)

    async def no_worker() -> Resources:
        raise AssertionError("nothing consumes these queues")

    yield Queues(declare(broker, no_worker), services.redis_url, database_url, namespace)
    broker.close()
    purge(services.redis_url, namespace)


def test_stats_waiting_alert_fires_above_100_and_not_at_100(queues: Queues) -> None:
    assert WAITING_ALERT == 100
    for number in range(60):
        queues.queue.drain(number)
    for number in range(40):
        queues.queue.send(number)
    for number in range(5):  # delayed work is not waiting work
        queues.queue.drain(1000 + number, delay_ms=3_600_000)

    at = queues.stats()
    assert (at.waiting, at.delayed, at.active) == (100, 5, 0)
    assert at.queues[INBOUND].waiting == 60 and at.queues[OUTBOUND].waiting == 40
    assert at.firing == {"waiting_high": False, "failed_high": False, "no_active_worker": True}
    assert at.alerts == [NO_WORKER]

    queues.queue.proactive(1)  # the 101st, on a third queue: the figure is the sum
    above = queues.stats()
    assert above.waiting == 101 and above.queues[PROACTIVE].waiting == 1
    assert above.firing["waiting_high"] is True
    assert above.alerts == [WAITING, NO_WORKER]

    human = queues.cli()
    assert "waiting 101 · active 0 · delayed 5" in human
    assert f"ALERT: {WAITING}" in human and f"ALERT: {NO_WORKER}" in human
    assert json.loads(queues.cli("--json"))["alerts"] == [WAITING, NO_WORKER]


def test_stats_failed_alert_fires_above_50_in_the_last_hour_and_not_at_50(
    queues: Queues,
) -> None:
    assert FAILED_ALERT == 50
    now = datetime.now(UTC)
    queues.bury(OUTBOUND, 30, now - timedelta(minutes=5))
    queues.bury(INBOUND, 20, now - timedelta(minutes=20))
    queues.bury(OUTBOUND, 40, now - timedelta(hours=2))  # dead, but not in the last hour

    at = queues.stats()
    assert (at.dead, at.failed_last_hour, at.waiting) == (90, 50, 0)
    assert at.queues[OUTBOUND].failed_last_hour == 30 and at.queues[OUTBOUND].dead == 70
    assert at.queues[INBOUND].failed_last_hour == 20
    assert at.firing == {"waiting_high": False, "failed_high": False, "no_active_worker": False}
    assert at.alerts == []
    assert "no alerts" in queues.cli()

    queues.bury(PROACTIVE, 1, now - timedelta(minutes=1))
    above = queues.stats()
    assert (above.dead, above.failed_last_hour) == (91, 51)
    assert above.alerts == [FAILED]
    human = queues.cli()
    assert "dead 91 · failed last hour 51" in human and f"ALERT: {FAILED}" in human
    assert "no alerts" not in human
