"""Helpers shared by the pipeline tests: namespaces, polling, the CLI, a recording queue."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from click.testing import Result

from tests.conftest import zapvet as run_cli


def new_namespace() -> str:
    """A Redis namespace of this test's own, so parallel runs never share queues."""
    return f"zt{uuid.uuid4().hex[:10]}"


def purge(redis_url: str, namespace: str) -> None:
    """Delete every Redis key of `namespace`."""
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
    finally:
        client.close()


def wait_until(done: Callable[[], bool], *, timeout: float = 60.0, what: str = "") -> None:
    """Poll `done` until true; a hang guard, never a performance check."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what or 'the condition'}")
        time.sleep(0.05)


async def await_until(done: Callable[[], bool], *, timeout: float = 60.0, what: str = "") -> None:
    """`wait_until` for coroutines: yields to the event loop between polls."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what or 'the condition'}")
        await asyncio.sleep(0.02)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def zapvet(*args: str, database_url: str, redis_url: str, namespace: str) -> Result:
    """Run `zapvet ARGS` in this process against these servers and this queue namespace."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ZAPVET_QUEUE_NAMESPACE": namespace,
        "ZAPVET_LOG_FORMAT": "json",
    }
    return run_cli(*args, env=env)


@dataclass
class Recorder:
    """An `Enqueue` that remembers what it was asked to enqueue, in order."""

    drains: list[int] = field(default_factory=list)
    sends: list[int] = field(default_factory=list)
    proactive_ids: list[int] = field(default_factory=list)
    webhooks: list[int] = field(default_factory=list)

    def drain(
        self, conversation_id: int, *, delay_ms: int = 0, organization_id: int | None = None
    ) -> None:
        self.drains.append(conversation_id)

    def request_drain(
        self, conversation_id: int, *, organization_id: int, delay_ms: int = 0
    ) -> bool:
        self.drains.append(conversation_id)
        return True

    def send(self, message_id: int, *, retry: bool = False, refused: str | None = None) -> None:
        self.sends.append(message_id)

    def proactive(self, proactive_id: int) -> None:
        self.proactive_ids.append(proactive_id)

    def webhook(self, delivery_id: int) -> None:
        self.webhooks.append(delivery_id)
