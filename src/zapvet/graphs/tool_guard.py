"""What a tool call must look like before it runs: a model's arguments are untrusted input.

(Their strings were already cleaned when the answer entered the state: `loop.cleaned_answer`.)
An integer beyond PostgreSQL's BIGINT names no row and is refused in plain Portuguese
instead of failing in the driver. A message may carry at most
`MAX_CALLS_PER_MESSAGE` calls (the model is asked for one at a time); the rest are refused
with a note, so a hostile answer cannot book fifty appointments in one step.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from zapvet.graphs.tool_order import Execute, InOrder, calls_of_last_message

MAX_CALLS_PER_MESSAGE = 5
_BIGINT = 2**63 - 1


class ToolGuard:
    """An `awrap_tool_call` interceptor: refuse what must not run, run the rest in order."""

    def __init__(self) -> None:
        self._in_order = InOrder(limit=MAX_CALLS_PER_MESSAGE)

    async def __call__(
        self, request: ToolCallRequest, execute: Execute
    ) -> ToolMessage | Command[Any]:
        refusal = _too_many(request)
        if refusal is not None:  # not one of the first calls: InOrder never waits for it
            return _refused(request, refusal)

        async def checked(request: ToolCallRequest) -> ToolMessage | Command[Any]:
            # Inside InOrder, so that a refused call still lets the next ones run.
            refusal = _out_of_range(request.tool_call.get("args"))
            return _refused(request, refusal) if refusal else await execute(request)

        return await self._in_order(request, checked)


def _refused(request: ToolCallRequest, refusal: str) -> ToolMessage:
    call = request.tool_call
    return ToolMessage(refusal, tool_call_id=call["id"] or "", name=call["name"], status="error")


def _too_many(request: ToolCallRequest) -> str | None:
    ids = [str(call.get("id")) for call in calls_of_last_message(request.state)]
    mine = str(request.tool_call.get("id"))
    if mine in ids and ids.index(mine) >= MAX_CALLS_PER_MESSAGE:
        return (
            f"Não executado: no máximo {MAX_CALLS_PER_MESSAGE} ações por mensagem. "
            "Faça uma ação por vez e confira o resultado antes da próxima."
        )
    return None


def _out_of_range(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not -_BIGINT <= value <= _BIGINT:
        return f"Não existe registro com o número {value}; nada foi alterado."
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return next((found for item in value if (found := _out_of_range(item))), None)
    return None
