"""The poison guard: a message that keeps killing its worker is dead-lettered, not looped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import dramatiq
import pytest
import redis
from dramatiq.broker import MessageProxy
from dramatiq.middleware import SkipMessage

from tests.pipeline.support import new_namespace, purge, wait_until
from zapvet.embedded import ServiceUrls
from zapvet.queue import dlq
from zapvet.queue.broker import OUTBOUND, build_broker
from zapvet.queue.middleware import PoisonGuard

MAX_DELIVERIES = 3


class Probe:
    """A broker with the guard, and an actor that records the arguments it ran with."""

    def __init__(self, redis_url: str) -> None:
        self.namespace = new_namespace()
        self.broker = build_broker(
            redis_url, namespace=self.namespace, max_deliveries=MAX_DELIVERIES
        )
        self.guard = next(m for m in self.broker.middleware if isinstance(m, PoisonGuard))
        self.ran: list[int] = []

        def probe(number: int) -> None:
            self.ran.append(number)

        declare = cast(Any, dramatiq.actor)
        self.actor = declare(
            broker=self.broker, actor_name="probe", queue_name=OUTBOUND, max_retries=0
        )(probe)

    def crashed_deliveries(self, message: Any, times: int) -> None:
        """Deliveries whose worker died mid-job: the guard counted them, nothing else ran."""
        for _ in range(times):
            self.guard.before_process_message(self.broker, MessageProxy(message))


@pytest.fixture
def probe(services: ServiceUrls) -> Iterator[Probe]:
    probe = Probe(services.redis_url)
    yield probe
    purge(services.redis_url, probe.namespace)


def test_poison_guard_fails_the_delivery_after_max_at_one_retry_count(probe: Probe) -> None:
    message = probe.actor.message(1)
    probe.crashed_deliveries(message, MAX_DELIVERIES)
    again = MessageProxy(message)
    with pytest.raises(SkipMessage):
        probe.guard.before_process_message(probe.broker, again)
    assert again.failed
    # A retry (a new retry count) starts a new tally: only same-count redeliveries add up.
    retried = MessageProxy(message.copy(options={**message.options, "retries": 1}))
    probe.guard.before_process_message(probe.broker, retried)
    assert not retried.failed


def test_poison_guard_dead_letters_a_message_that_keeps_coming_back(
    probe: Probe, services: ServiceUrls
) -> None:
    poison, survivor = probe.actor.send(1), probe.actor.send(2)
    probe.crashed_deliveries(poison, MAX_DELIVERIES)
    probe.crashed_deliveries(survivor, MAX_DELIVERIES - 1)
    client = redis.Redis.from_url(services.redis_url)
    worker = dramatiq.Worker(probe.broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        wait_until(
            lambda: probe.ran == [2] and len(dlq.list_dead(client, probe.namespace)) == 1,
            what="the survivor to run and the poison to be dead-lettered",
        )
    finally:
        worker.stop()
    (dead,) = dlq.list_dead(client, probe.namespace)
    client.close()
    assert (dead.message_id, dead.actor, dead.args) == (poison.message_id, "probe", [1])
    assert probe.ran == [2]  # the poison message never reached its actor
