"""The conversation locks refuse a drain only while another drain really holds the conversation.

A drain refused (BUSY) relies on the holder's re-check after it lets go; a refusal on behalf
of a drain that never got the lock has no such re-check behind it, and the message would wait
for the sweeper. Two `ConversationLocks` stand for two worker processes (each has its own
PostgreSQL session, as each process does).
"""

from __future__ import annotations

import asyncio

import pytest

from zapvet.queue.locks import ConversationLocks


@pytest.mark.anyio
async def test_a_drain_refused_elsewhere_does_not_refuse_the_next_drain_here(
    database_url: str,
) -> None:
    here, elsewhere = ConversationLocks(database_url), ConversationLocks(database_url)
    taken, other_done, refused_inside = asyncio.Event(), asyncio.Event(), asyncio.Event()
    outcomes: list[str] = []

    async def holder_elsewhere() -> None:
        async with elsewhere.hold(7) as got:
            assert got
            taken.set()
            await refused_inside.wait()  # the first drain here is refused and still in its block
        other_done.set()

    async def refused_here() -> None:
        await taken.wait()
        async with here.hold(7) as got:
            outcomes.append(f"first {got}")
            refused_inside.set()
            await other_done.wait()  # the holder has let go; this drain has not left yet
            async with here.hold(7) as second:  # the drain of a message stored just now
                outcomes.append(f"second {second}")

    try:
        await asyncio.wait_for(asyncio.gather(holder_elsewhere(), refused_here()), 30)
    finally:
        await here.close()
        await elsewhere.close()
    assert outcomes == ["first False", "second True"]


@pytest.mark.anyio
async def test_a_drain_holding_here_refuses_a_second_drain_here(database_url: str) -> None:
    locks = ConversationLocks(database_url)
    try:
        # Re-entrant in PostgreSQL (one session), so the keeper is what refuses the second.
        async with locks.hold(7) as first, locks.hold(7) as second:
            assert (first, second) == (True, False)
        async with locks.hold(7) as again:
            assert again
    finally:
        await locks.close()
