"""Run the tool calls of one model message one at a time, in the order the model wrote them.

ToolNode runs the calls of a message concurrently. For an attendant, order matters:
`register_pet` must land before the `book_appointment` that names the pet. Calls of other
conversations still run concurrently; only calls of the same message wait for each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

Execute = Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]]


@dataclass
class _Batch:
    size: int
    done: int = 0
    turn: asyncio.Condition = field(default_factory=asyncio.Condition)


class InOrder:
    """An `awrap_tool_call` interceptor for ToolNode that serialises one message's calls.

    Only the first `limit` calls of a message take part (the caller refuses the others
    before they get here), so a batch always completes and is forgotten.
    """

    def __init__(self, limit: int | None = None) -> None:
        self._batches: dict[tuple[str, ...], _Batch] = {}
        self._limit = limit

    async def __call__(
        self, request: ToolCallRequest, execute: Execute
    ) -> ToolMessage | Command[Any]:
        calls = calls_of_last_message(request.state)[: self._limit]
        key = tuple(str(call.get("id")) for call in calls)
        mine = str(request.tool_call.get("id"))
        if len(calls) < 2 or mine not in key:
            return await execute(request)
        index = key.index(mine)
        batch = self._batches.setdefault(key, _Batch(size=len(key)))
        async with batch.turn:
            await batch.turn.wait_for(lambda: batch.done == index)
        try:
            return await execute(request)
        finally:
            async with batch.turn:
                batch.done += 1
                batch.turn.notify_all()
            if batch.done == batch.size:
                self._batches.pop(key, None)


def calls_of_last_message(state: Any) -> list[dict[str, Any]]:
    messages = state.get("messages", []) if isinstance(state, dict) else state
    if not messages:
        return []
    return list(getattr(messages[-1], "tool_calls", []) or [])
