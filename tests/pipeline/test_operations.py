"""Operating the pipeline: health, readiness, queue figures and alerts, the dead-letter queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from dramatiq import Message
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from tests.pipeline.conftest import rows
from tests.pipeline.support import closed_port, new_namespace, purge, zapvet
from zapvet.bridge.app import build_app
from zapvet.embedded import ServiceUrls
from zapvet.queue import dlq
from zapvet.queue.broker import INBOUND, OUTBOUND
from zapvet.runtime import bridge_state_factory
from zapvet.serving import BackgroundServer
from zapvet.testing.stack import LocalStack

ANA = "5511977776666"
NO_WORKER = "active = 0 while messages wait: no worker is consuming"
FIGURES = ("waiting", "active", "delayed", "dead", "failed_last_hour")


def figures(stats: dict[str, Any]) -> dict[str, int]:
    return {name: stats[name] for name in FIGURES}


def get(stack: LocalStack, path: str) -> httpx.Response:
    return httpx.get(f"{stack.bridge_url}{path}", timeout=30)


def cli(stack: LocalStack, *args: str) -> str:
    """Run `zapvet *args` on the stack's servers and queues; its stdout (it must succeed)."""
    done = zapvet(
        *args,
        database_url=stack.database_url,
        redis_url=stack.redis_url,
        namespace=stack.namespace,
    )
    assert done.exit_code == 0, done.output
    return done.stdout


@pytest.mark.slow  # the whole pipeline
def test_bridge_healthz_and_readyz_report_ok(stack: LocalStack) -> None:
    health = get(stack, "/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = get(stack, "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "database": "ok",
        "redis": "ok",
        # Detail: the instance has not reported its connection yet.
        "instances": {"petfeliz/petfeliz": {"provider": "evolution", "state": None, "since": None}},
    }


@pytest.mark.parametrize("down", ["redis", "database"])
def test_bridge_readyz_names_what_is_down(
    database_url: str, services: ServiceUrls, down: str
) -> None:
    port = closed_port()
    redis_url, db_url = services.redis_url, database_url
    if down == "redis":
        redis_url = f"redis://127.0.0.1:{port}/0"
    else:
        url = make_url(database_url).set(host="127.0.0.1", port=port, query={})
        db_url = url.render_as_string(hide_password=False)
    state = bridge_state_factory(db_url, redis_url, namespace=new_namespace())
    with BackgroundServer(build_app(state), name="zapvet-bridge-down") as bridge:
        assert httpx.get(f"{bridge.origin}/healthz", timeout=30).status_code == 200
        ready = httpx.get(f"{bridge.origin}/readyz", timeout=30)
    assert ready.status_code == 503
    body = ready.json()
    up = "database" if down == "redis" else "redis"
    assert body["ready"] is False and body[up] == "ok"
    assert body[down] not in ("", "ok") and "Error" in body[down]


@pytest.mark.slow  # the whole pipeline
def test_stats_alert_when_messages_wait_with_no_worker(stack: LocalStack) -> None:
    stack.stop_worker()
    for phone in ("5511911110001", "5511911110002", "5511911110003"):
        stack.say(phone, "Oi, alguém aí?")
    stats = get(stack, "/stats").json()
    assert figures(stats) == {**dict.fromkeys(FIGURES, 0), "waiting": 3}
    assert stats["queues"][INBOUND]["waiting"] == 3
    assert stats["queues"][OUTBOUND]["waiting"] == 0
    assert NO_WORKER in stats["alerts"]
    # The command line reads the same figures from the same Redis.
    assert json.loads(cli(stack, "stats", "--json")) == stats
    human = cli(stack, "stats")
    assert "waiting 3 · active 0" in human and f"ALERT: {NO_WORKER}" in human

    stack.start_worker()
    stack.wait(lambda: len(stack.gateway.sent) == 3, what="the three replies")
    stack.wait(
        lambda: figures(get(stack, "/stats").json()) == dict.fromkeys(FIGURES, 0),
        what="the queues to empty",
    )
    assert get(stack, "/stats").json()["alerts"] == []
    assert "no alerts" in cli(stack, "stats")


@pytest.mark.slow  # the whole pipeline
def test_stats_counts_delayed_drains(stack: LocalStack) -> None:
    stack.stop_worker()
    stack.queue.drain(123_456, delay_ms=3_600_000)
    stats = get(stack, "/stats").json()
    assert stats["delayed"] == 1 and stats["waiting"] == 0
    assert stats["queues"][INBOUND]["delayed"] == 1
    assert stats["alerts"] == []  # delayed work is not work waiting for a worker


def outgoing(engine: Engine) -> tuple[Any, ...]:
    (row,) = rows(
        engine, "SELECT id, status, error, attempts FROM messages WHERE direction='outgoing'"
    )
    return row


@pytest.mark.slow  # the whole pipeline
def test_dead_letters_a_rejected_send_fails_once_and_can_be_requeued(
    stack: LocalStack, engine: Engine
) -> None:
    reason = "Número não existe no WhatsApp"
    stack.gateway.fail_next(400, message=reason)
    stack.say(ANA, "Oi")
    client = redis.Redis.from_url(stack.redis_url)
    try:
        stack.wait(lambda: len(dlq.list_dead(client, stack.namespace)) == 1, what="a dead letter")
        message_id, status, error, attempts = outgoing(engine)
        assert (status, attempts) == ("failed", 1) and reason in str(error)
        sends = [r for r in stack.gateway.requests if r.path.startswith("/message/")]
        assert len(sends) == 1  # a permanent refusal is never retried
        (dead,) = dlq.list_dead(client, stack.namespace)
        assert (dead.queue, dead.actor, dead.args) == (OUTBOUND, "send_message", [message_id])

        listed = cli(stack, "dlq", "list")
        assert dead.message_id in listed and f"outbound/send_message({message_id},)" in listed

        stack.stop_worker()
        assert cli(stack, "dlq", "requeue").strip() == "requeued 1 message(s)"
        assert dlq.list_dead(client, stack.namespace) == []
        stats = get(stack, "/stats").json()
        assert stats["queues"][OUTBOUND]["waiting"] == 1 and stats["dead"] == 0
        assert "the dead-letter queue is empty" in cli(stack, "dlq", "list")

        stack.start_worker()  # the gateway accepts it now: the requeued job tries again
        stack.wait(lambda: outgoing(engine)[1] == "sent", what="the requeued send")
        assert outgoing(engine) == (message_id, "sent", None, 2)
        assert [sent.text for sent in stack.gateway.sent] == ["Recebi: Oi"]
    finally:
        client.close()


@pytest.fixture
def dead_letters(services: ServiceUrls) -> Iterator[tuple[redis.Redis, str]]:
    namespace = new_namespace()
    client = redis.Redis.from_url(services.redis_url)
    yield client, namespace
    client.close()
    purge(services.redis_url, namespace)


def bury(client: redis.Redis, namespace: str, queue: str, number: int, died: datetime) -> str:
    """Dead-letter a message the way Dramatiq's dispatch script does; its message id."""
    message: Message[Any] = Message(
        queue_name=queue, actor_name="send_message", args=(number,), kwargs={}, options={}
    )
    key = f"{namespace}:{queue}.XQ"
    redis_id = f"redis-{message.message_id}"
    client.zadd(key, {redis_id: int(died.timestamp() * 1000)})
    client.hset(f"{key}.msgs", redis_id, message.encode())
    return message.message_id


def test_dlq_trim_keeps_only_the_newest_per_queue(dead_letters: tuple[redis.Redis, str]) -> None:
    client, namespace = dead_letters
    now = datetime.now(UTC)
    ids = [bury(client, namespace, OUTBOUND, n, now - timedelta(minutes=n)) for n in range(5)]
    lone = bury(client, namespace, INBOUND, 99, now - timedelta(hours=1))
    assert dlq.trim(client, namespace, keep=2) == 3
    kept = dlq.list_dead(client, namespace)
    assert [dead.message_id for dead in kept] == [ids[0], ids[1], lone]  # newest first
    assert client.hlen(f"{namespace}:{OUTBOUND}.XQ.msgs") == 2  # the bodies went too
    assert dlq.trim(client, namespace, keep=2) == 0
