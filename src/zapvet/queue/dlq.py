"""The dead-letter queue: list, requeue with a fresh retry budget, trim (Dramatiq has no API)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from dramatiq import Message

from zapvet.queue.broker import QUEUES

#: Options that belong to a previous life of the message and must not follow it back.
_STALE_OPTIONS = ("retries", "traceback", "requeue_timestamp", "redis_message_id", "eta")
#: Set on requeued messages: an operator asked for the work again, so a send whose row was
#: settled `failed` is tried once more instead of being skipped as done.
REQUEUED = "zapvet_requeued"


@dataclass(frozen=True)
class DeadMessage:
    message_id: str
    queue: str
    actor: str
    args: list[Any]
    died_at: datetime
    retries: int
    error: str


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _forget(client: redis.Redis, xq: str, *ids: bytes) -> None:
    pipe = client.pipeline()
    pipe.zrem(xq, *ids)
    pipe.hdel(f"{xq}.msgs", *ids)
    pipe.execute()


def _error(options: dict[str, Any]) -> str:
    trace = str(options.get("traceback") or "").strip().splitlines()
    return trace[-1] if trace else "failed without retrying (permanent error or poison guard)"


def list_dead(client: redis.Redis, namespace: str, limit: int = 50) -> list[DeadMessage]:
    """The most recently dead-lettered messages, newest first."""
    found: list[DeadMessage] = []
    for queue in QUEUES:
        xq = f"{namespace}:{queue}.XQ"
        entries: Any = client.zrevrange(xq, 0, limit - 1, withscores=True)
        for raw_id, score in entries:
            body = client.hget(f"{xq}.msgs", raw_id)
            if body is None:
                continue
            message = Message.decode(_as_bytes(body))
            found.append(
                DeadMessage(
                    message_id=message.message_id,
                    queue=queue,
                    actor=message.actor_name,
                    args=list(message.args),
                    died_at=datetime.fromtimestamp(float(score) / 1000, UTC),
                    retries=int(message.options.get("retries", 0)),
                    error=_error(message.options),
                )
            )
    return sorted(found, key=lambda dead: dead.died_at, reverse=True)[:limit]


def requeue(broker: Any, client: redis.Redis, namespace: str, ids: list[str] | None = None) -> int:
    """Put dead messages (all, or those in `ids`) back on their queues; returns how many."""
    wanted = set(ids or [])
    moved = 0
    for queue in QUEUES:
        xq = f"{namespace}:{queue}.XQ"
        members: Any = client.zrange(xq, 0, -1)
        for member in members:
            raw_id = _as_bytes(member)
            body = client.hget(f"{xq}.msgs", raw_id)
            if body is None:
                continue
            message = Message.decode(_as_bytes(body))
            if wanted and message.message_id not in wanted and raw_id.decode() not in wanted:
                continue
            options = {k: v for k, v in message.options.items() if k not in _STALE_OPTIONS}
            options[REQUEUED] = True
            broker.enqueue(dataclasses.replace(message, queue_name=queue, options=options))
            _forget(client, xq, raw_id)
            moved += 1
    return moved


def trim(client: redis.Redis, namespace: str, keep: int = 10_000) -> int:
    """Drop all but the newest `keep` dead messages per queue (Dramatiq trims only by age)."""
    removed = 0
    for queue in QUEUES:
        xq = f"{namespace}:{queue}.XQ"
        old: Any = client.zrange(xq, 0, -(keep + 1))
        if old:
            _forget(client, xq, *(_as_bytes(member) for member in old))
            removed += len(old)
    return removed
