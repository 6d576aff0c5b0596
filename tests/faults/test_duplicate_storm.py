"""Fault (f): every webhook delivered five times at once. One row and one reply each."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import Engine

from tests.faults.harness import tally, unique_text, wait_for
from tests.pipeline.conftest import scalar
from zapvet.testing.stack import INSTANCE, WEBHOOK_TOKEN, LocalStack

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

COPIES = 5


async def storm(stack: LocalStack, payloads: list[dict[str, object]]) -> list[dict[str, int]]:
    """POST every payload COPIES times, all at once; the JSON bodies of the answers."""
    url = f"{stack.bridge_url}/webhooks/evolution/{INSTANCE}"
    async with httpx.AsyncClient(headers={"X-Webhook-Token": WEBHOOK_TOKEN}, timeout=60) as http:
        answers = await asyncio.gather(
            *(http.post(url, json=payload) for payload in payloads for _ in range(COPIES))
        )
    assert {answer.status_code for answer in answers} == {200}
    return [answer.json() for answer in answers]


def test_duplicate_storm_one_row_and_one_reply_per_message(
    shared_stack: LocalStack, engine: Engine
) -> None:
    stack = shared_stack
    # New customers (their contact and conversation are created by racing webhooks too),
    # two messages each.
    texts = [unique_text(f"c{n}m{m}") for n in range(10) for m in range(2)]
    payloads = [
        stack.gateway.incoming(INSTANCE, f"5511970004{i // 2:03d}", text)
        for i, text in enumerate(texts)
    ]
    bodies = asyncio.run(storm(stack, payloads))
    assert sum(body["stored"] for body in bodies) == len(texts)
    assert sum(body["duplicates"] for body in bodies) == len(texts) * (COPIES - 1)
    wait_for(
        lambda: (
            tally(engine, stack.gateway, texts).lost == 0
            and tally(engine, stack.gateway, texts).pending == 0
        ),
        what="every message to be answered",
    )
    result = tally(engine, stack.gateway, texts)
    assert (result.lost, result.duplicates, result.unrecordable) == (0, 0, 0)
    assert scalar(engine, "SELECT count(*) FROM messages WHERE direction='incoming'") == 20
    assert scalar(engine, "SELECT count(*) FROM contacts") == 10
    assert scalar(engine, "SELECT count(*) FROM conversations") == 10
