"""The client attendant graph: prepare → agent ⇄ tools → finalize.

`prepare` reads the turn's snapshot (organization, catalogue, the contact's pets and
appointments) and stays silent for escalated or closed conversations. `agent` calls the
model with a byte-stable system prompt, the history, the per-turn context and this turn's
messages; a model failure becomes the fallback reply instead of an exception. `tools` runs
the model's tool calls in order. `finalize` checks the reply's prices, dates and times
against this turn's sources and records the turn in `ai_interactions`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime

from zapvet.errors import SlotTakenError, ToolError
from zapvet.graphs.client.context import ClientContext
from zapvet.graphs.client.prompts import render_context, render_static
from zapvet.graphs.client.snapshot import load_snapshot
from zapvet.graphs.client.state import ClientState
from zapvet.graphs.grounding import ungrounded_facts
from zapvet.graphs.tool_order import InOrder
from zapvet.logging import get_logger
from zapvet.models import AIInteraction
from zapvet.tools.client import make_client_tools
from zapvet.tools.deps import ToolDeps

FALLBACK_REPLY = "Desculpe, ocorreu um erro. Por favor, tente novamente."
LAST_STEP_REPLY = (
    "Desculpe, não consegui concluir seu pedido agora. "
    "Vou pedir para alguém da equipe continuar o atendimento."
)
#: Graph steps per turn: prepare + finalize + up to 11 model/tool rounds.
RECURSION_LIMIT = 24

log = get_logger("zapvet.graphs.client")


def tool_error_text(error: Exception) -> str:
    """What the model reads when a tool fails: the refusal, or a safe generic message."""
    if isinstance(error, SlotTakenError):
        options = "; ".join(error.alternatives) or "nenhum horário livre próximo"
        return f"{error.message} Horários livres mais próximos: {options}."
    if isinstance(error, ToolError):
        return error.message
    if type(error).__name__ in {"ToolInvocationError", "ValidationError"}:
        return f"Argumentos inválidos para a ferramenta: {error}"
    log.error("tool failed", error_type=type(error).__name__, exc_info=error)
    return (
        "Erro interno ao executar a ferramenta; nada foi alterado. "
        "Peça desculpas ao cliente e ofereça chamar alguém da equipe."
    )


def _split_turn(messages: Sequence[BaseMessage]) -> int:
    """Index where this turn's new customer messages begin (after the last assistant reply)."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], AIMessage):
            return index + 1
    return 0


def build_prompt(state: ClientState) -> list[BaseMessage]:
    """System prompt, earlier history, per-turn context, then this turn's messages."""
    messages = state["messages"]
    start = state.get("turn_start", len(messages))
    history, produced = list(messages[:start]), list(messages[start:])
    split = _split_turn(history)
    return [
        SystemMessage(state.get("system_prompt", "")),
        *history[:split],
        SystemMessage(state.get("context_prompt", "")),
        *history[split:],
        *produced,
    ]


def build_graph(
    model: BaseChatModel, deps: ToolDeps, *, name: str = "client"
) -> CompiledStateGraph[ClientState, ClientContext, Any, Any]:
    """Compile the client attendant around `model`, with tools bound to `deps`."""
    tools = make_client_tools(deps)
    llm = model.bind_tools(tools, parallel_tool_calls=False)

    async def prepare(state: ClientState, runtime: Runtime[ClientContext]) -> dict[str, Any]:
        context = runtime.context
        if context is None or not context.complete:
            return {"silenced": True, "error": "missing trusted context"}
        now = deps.clock()
        async with deps.sessions() as session:
            snapshot = await load_snapshot(
                session,
                organization_id=context.organization_id,
                contact_id=context.contact_id,
                conversation_id=context.conversation_id,
                now=now,
            )
        return {
            "silenced": snapshot.conversation_status != "active",
            "system_prompt": render_static(snapshot),
            "context_prompt": render_context(snapshot, now),
            "turn_start": len(state["messages"]),
            "today": now.astimezone(snapshot.org.zone).date().isoformat(),
            "model": snapshot.model,
            "temperature": snapshot.temperature,
            "started": time.perf_counter(),
            "escalated": False,
            "error": None,
            "reply": None,
        }

    async def agent(state: ClientState) -> dict[str, Any]:
        if state["remaining_steps"] <= 3:
            return {"messages": [AIMessage(LAST_STEP_REPLY)]}
        overrides: dict[str, Any] = {"temperature": state.get("temperature", 0.3)}
        if state.get("model"):
            overrides["model"] = state["model"]
        try:
            response = await llm.bind(**overrides).ainvoke(build_prompt(state))
        except Exception as error:  # every model failure becomes the fallback reply
            log.warning("model call failed", error_type=type(error).__name__)
            return {"messages": [AIMessage(FALLBACK_REPLY)], "error": _describe(error)}
        if (
            isinstance(response, AIMessage)
            and response.invalid_tool_calls
            and not response.tool_calls
        ):
            bad = ", ".join(str(call.get("name")) for call in response.invalid_tool_calls)
            return {
                "messages": [AIMessage(FALLBACK_REPLY)],
                "error": f"malformed tool call from the model: {bad}",
            }
        return {"messages": [response]}

    def after_agent(state: ClientState) -> Literal["tools", "finalize"]:
        last = state["messages"][-1]
        if state.get("error") is None and isinstance(last, AIMessage) and last.tool_calls:
            return "tools"
        return "finalize"

    def after_prepare(state: ClientState) -> Literal["agent", "__end__"]:
        return "__end__" if state.get("silenced") else "agent"

    async def finalize(state: ClientState, runtime: Runtime[ClientContext]) -> dict[str, Any]:
        context = runtime.context
        assert context is not None
        produced = state["messages"][state.get("turn_start", 0) :]
        answers = [m for m in produced if isinstance(m, AIMessage)]
        reply = str(answers[-1].content) if answers else FALLBACK_REPLY
        error = state.get("error")
        sources = [state.get("system_prompt", ""), state.get("context_prompt", "")]
        sources += [str(m.content) for m in produced if isinstance(m, ToolMessage)]
        ungrounded = (
            []
            if error
            else ungrounded_facts(reply, sources, today=date.fromisoformat(state["today"]))
        )
        if ungrounded:
            log.warning(
                "ungrounded facts in reply",
                conversation_id=context.conversation_id,
                facts=[f"{fact.kind}:{fact.text}" for fact in ungrounded],
            )
        usage = _usage(answers)
        model_name = next(
            (
                str(m.response_metadata.get("model_name"))
                for m in reversed(answers)
                if m.response_metadata.get("model_name")
            ),
            state.get("model") or None,
        )
        async with deps.sessions() as session, session.begin():
            session.add(
                AIInteraction(
                    organization_id=context.organization_id,
                    conversation_id=context.conversation_id,
                    ai_type="client",
                    status="error" if error else "success",
                    error_message=error,
                    model=model_name,
                    input_tokens=usage["input_tokens"],
                    output_tokens=usage["output_tokens"],
                    cached_input_tokens=usage["cache_read"],
                    tool_calls=sum(len(m.tool_calls) for m in answers),
                    ungrounded_facts=len(ungrounded),
                    duration_ms=int((time.perf_counter() - state.get("started", 0.0)) * 1000),
                )
            )
        return {"reply": reply, "ungrounded": [fact.text for fact in ungrounded]}

    graph = StateGraph(ClientState, context_schema=ClientContext)
    graph.add_node("prepare", prepare)
    graph.add_node("agent", agent)
    graph.add_node(
        "tools", ToolNode(tools, handle_tool_errors=tool_error_text, awrap_tool_call=InOrder())
    )
    graph.add_node("finalize", finalize)
    graph.add_edge(START, "prepare")
    graph.add_conditional_edges("prepare", after_prepare, ["agent", END])
    graph.add_conditional_edges("agent", after_agent, ["tools", "finalize"])
    graph.add_edge("tools", "agent")
    graph.add_edge("finalize", END)
    return graph.compile(name=name)


def _describe(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:500]


def _usage(answers: Sequence[AIMessage]) -> dict[str, int]:
    totals = {"input_tokens": 0, "output_tokens": 0, "cache_read": 0}
    for message in answers:
        usage = message.usage_metadata
        if usage:
            totals["input_tokens"] += usage.get("input_tokens", 0)
            totals["output_tokens"] += usage.get("output_tokens", 0)
            totals["cache_read"] += usage.get("input_token_details", {}).get("cache_read", 0) or 0
    return totals
