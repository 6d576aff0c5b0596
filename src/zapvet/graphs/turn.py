"""Running one agent turn: history and trusted context in, the reply and its outcome out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from opentelemetry.trace import Status, StatusCode

from zapvet.graphs.loop import RECURSION_LIMIT
from zapvet.graphs.state import AgentState
from zapvet.otel.tracing import tracer


@dataclass(frozen=True)
class TurnResult:
    """`reply` is None when the graph stayed silent (escalated or closed conversation)."""

    reply: str | None
    escalated: bool = False
    #: Staff alerts the turn's escalation committed (the drain sends them).
    alerts: list[int] = field(default_factory=list)
    #: The turn gave up (step limit) and promised the customer a person.
    handoff: bool = False
    #: The customer asked to have their data erased (LGPD): the owner is asked to confirm.
    erasure_requested: bool = False
    error: str | None = None
    ungrounded: list[str] = field(default_factory=list)
    messages: list[BaseMessage] = field(default_factory=list)
    system_prompt: str = ""
    context_prompt: str = ""
    #: The turn's `ai_interactions` fields, when the caller asked to store them itself.
    interaction: dict[str, Any] | None = None


async def run_turn(
    graph: CompiledStateGraph[AgentState, Any, Any, Any],
    context: Any,
    history: Sequence[BaseMessage],
    *,
    config: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
) -> TurnResult:
    """Run `graph` once inside an `invoke_agent <name>` span (GenAI semantic conventions).

    `inputs` are further state keys for the turn (`audio_seconds`, `images`: its media cost).

    The span is ours, not the LangChain instrumentation's (`otel_trace: False` turns its
    chain spans off), so that node spans nest under it and LLM and tool spans under them.
    """
    conversation_id = str(getattr(context, "conversation_id", "") or "")
    extra = config or {}
    metadata = {**extra.get("metadata", {}), "otel_trace": False}
    metadata.setdefault("conversation_id", conversation_id)  # opaque, never a phone
    run_config = cast(
        RunnableConfig, {"recursion_limit": RECURSION_LIMIT, **extra, "metadata": metadata}
    )
    with tracer().start_as_current_span(
        f"invoke_agent {graph.name}",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": graph.name,
            "gen_ai.conversation.id": conversation_id,
            "zapvet.organization.id": int(getattr(context, "organization_id", 0) or 0),
        },
    ) as span:
        state = await graph.ainvoke(
            {**(inputs or {}), "messages": list(history)}, run_config, context=context
        )
        silenced = bool(state.get("silenced"))
        span.set_attributes(
            {
                "zapvet.turn.silenced": silenced,
                "zapvet.turn.escalated": bool(state.get("escalated")),
                "zapvet.turn.ungrounded": len(state.get("ungrounded") or []),
                "zapvet.reply.length": len(state.get("reply") or ""),
                "zapvet.reply.text": state.get("reply") or "",
            }
        )
        if state.get("error"):
            span.set_status(Status(StatusCode.ERROR, "the model failed; the fallback was sent"))
    return TurnResult(
        reply=None if silenced else state.get("reply"),
        escalated=bool(state.get("escalated")),
        alerts=list(state.get("alerts") or []),
        erasure_requested=bool(state.get("erasure_requested")),
        handoff=bool(state.get("handoff")),
        error=state.get("error"),
        ungrounded=list(state.get("ungrounded") or []),
        messages=list(state["messages"]),
        system_prompt=state.get("system_prompt", ""),
        context_prompt=state.get("context_prompt", ""),
        interaction=state.get("interaction"),
    )
