"""Running one agent turn: history and trusted context in, the reply and its outcome out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from zapvet.graphs.loop import RECURSION_LIMIT
from zapvet.graphs.state import AgentState


@dataclass(frozen=True)
class TurnResult:
    """`reply` is None when the graph stayed silent (escalated or closed conversation)."""

    reply: str | None
    escalated: bool = False
    error: str | None = None
    ungrounded: list[str] = field(default_factory=list)
    messages: list[BaseMessage] = field(default_factory=list)
    system_prompt: str = ""
    context_prompt: str = ""


async def run_turn(
    graph: CompiledStateGraph[AgentState, Any, Any, Any],
    context: Any,
    history: Sequence[BaseMessage],
    *,
    config: dict[str, Any] | None = None,
) -> TurnResult:
    run_config = cast(RunnableConfig, {"recursion_limit": RECURSION_LIMIT, **(config or {})})
    state = await graph.ainvoke({"messages": list(history)}, run_config, context=context)
    silenced = bool(state.get("silenced"))
    return TurnResult(
        reply=None if silenced else state.get("reply"),
        escalated=bool(state.get("escalated")),
        error=state.get("error"),
        ungrounded=list(state.get("ungrounded") or []),
        messages=list(state["messages"]),
        system_prompt=state.get("system_prompt", ""),
        context_prompt=state.get("context_prompt", ""),
    )
