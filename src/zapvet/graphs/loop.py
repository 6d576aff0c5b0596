"""The tool loop both agents share: prepare → agent ⇄ tools → finalize.

Each agent supplies its `prepare` node (load the turn's data, render the prompts, or answer
directly), its tools and its AI type. The loop supplies the rest: the model call with a
byte-stable system prompt first and the per-turn context just before this turn's messages;
the fallback reply when the model fails; tool calls run in order with refusals relayed as
text; and `finalize`, which checks the reply's prices, dates and times against the turn's
sources and records the turn in `ai_interactions`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any, Literal, Protocol, cast
from uuid import uuid4

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime
from sqlalchemy import exc as sa_exc

from zapvet.cleaning import clean_arguments, clean_text
from zapvet.errors import SlotTakenError, ToolError, describe
from zapvet.graphs.grounding import ungrounded_facts
from zapvet.graphs.state import AgentState
from zapvet.graphs.tool_guard import ToolGuard
from zapvet.logging import get_logger
from zapvet.models import AIInteraction
from zapvet.models.ai import AIType
from zapvet.otel.tracing import node_span, traced_node
from zapvet.tools.deps import ToolDeps

FALLBACK_REPLY = "Desculpe, ocorreu um erro. Por favor, tente novamente."
#: To a customer whose conversation was handed to a person when the turn's own reply was lost.
HANDOFF_REPLY = "Uma pessoa da nossa equipe vai continuar o seu atendimento por aqui. 🙂"
LAST_STEP_REPLY = (
    "Desculpe, não consegui concluir seu pedido agora. "
    "Vou pedir para alguém da equipe continuar o atendimento."
)
#: Graph steps per turn: prepare + finalize + up to 11 model/tool rounds.
RECURSION_LIMIT = 24
STEP_LIMIT_ERROR = "the turn reached its step limit (a tool loop?): handed to a person"
#: Finish reasons of an answer that was stopped before the model finished it.
CUT_SHORT = frozenset({"content_filter", "length"})

log = get_logger("zapvet.graphs")


class TurnContext(Protocol):
    """What the loop needs from a graph's trusted context."""

    @property
    def organization_id(self) -> int: ...
    @property
    def conversation_id(self) -> int: ...


Prepare = Callable[[AgentState, Runtime[Any]], Awaitable[dict[str, Any]]]


def unusable_answer(response: BaseMessage) -> str | None:
    """Why the model's `response` cannot be used (the fallback is sent instead), or None.

    A content filter or the token limit cut the answer short; a tool call whose arguments
    are not JSON cannot run (the message is refused whole: its other calls could depend on
    it); an answer with no tool call and no visible text has nothing to send.
    """
    if not isinstance(response, AIMessage):
        return f"the model answered with a {type(response).__name__}"
    finish = response.response_metadata.get("finish_reason")
    if finish in CUT_SHORT:
        return f"the model's answer was cut short (finish_reason={finish})"
    if response.invalid_tool_calls:
        bad = ", ".join(str(call.get("name")) for call in response.invalid_tool_calls)
        return f"malformed tool call from the model: {bad}"
    if not response.tool_calls and not clean_text(response.text):
        return "the model's answer was empty"
    return None


def cleaned_answer(response: AIMessage) -> AIMessage:
    """`response` with its text and every tool call's arguments cleaned (`clean_text`), and
    every call with an id of its own.

    Before anything reads it: the tools store the arguments, the drain the text, and the
    answer goes back to the model in the next request of the turn, which a lone surrogate
    in it would make impossible to encode.
    """
    seen: set[str] = set()
    calls = []
    for call in response.tool_calls:
        # Tool results are matched to calls by id: a missing or repeated id gets its own.
        call_id = call["id"] if call["id"] and call["id"] not in seen else f"call_{uuid4().hex}"
        seen.add(call_id)
        calls.append(ToolCall(name=call["name"], args=clean_arguments(call["args"]), id=call_id))
    return response.model_copy(
        update={"content": clean_arguments(response.content), "tool_calls": calls}
    )


def tool_error_text(error: Exception) -> str:
    """What the model reads when a tool fails: the refusal, or a safe generic message."""
    if isinstance(error, SlotTakenError):
        options = "; ".join(error.alternatives) or "nenhum horário livre próximo"
        return f"{error.message} Horários livres mais próximos: {options}."
    if isinstance(error, ToolError):
        return error.message
    if type(error).__name__ in {"ToolInvocationError", "ValidationError"}:
        return f"Argumentos inválidos para a ferramenta: {error}"
    if isinstance(error, sa_exc.DataError | OverflowError):
        # A value the model made up that the database or the calendar cannot hold (a
        # name too long, a number or date out of range): the transaction was rolled back.
        log.warning("tool argument out of range", error_type=type(error).__name__)
        return (
            "Algum valor informado é inválido (longo demais ou fora do intervalo); "
            "nada foi alterado. Confira os dados com o cliente."
        )
    log.error("tool failed", error_type=type(error).__name__, exc_info=error)
    return (
        "Erro interno ao executar a ferramenta; nada foi alterado. "
        "Peça desculpas e ofereça chamar alguém da equipe."
    )


def turn_fields(
    state: AgentState, *, today: date, model: str | None, temperature: float
) -> dict[str, Any]:
    """The bookkeeping every `prepare` returns along with its prompts."""
    return {
        "turn_start": len(state["messages"]),
        "today": today.isoformat(),
        "model": model,
        "temperature": temperature,
        "started": time.perf_counter(),
        "escalated": False,
        "handoff": False,
        "silenced": False,
        "error": None,
        "reply": None,
        "ungrounded": [],
    }


def latest_text(state: AgentState) -> str | None:
    """The newest incoming message of this turn, if the turn ends with one."""
    messages = state["messages"]
    if messages and isinstance(messages[-1], HumanMessage):
        return messages[-1].text  # the words of a message that also carries an image
    return None


def _split_turn(messages: Sequence[BaseMessage]) -> int:
    """Index where this turn's new messages begin (after the last assistant reply)."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], AIMessage):
            return index + 1
    return 0


def build_prompt(state: AgentState) -> list[BaseMessage]:
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


def _usage(answers: Sequence[AIMessage]) -> dict[str, int]:
    totals = {"input_tokens": 0, "output_tokens": 0, "cache_read": 0}
    for message in answers:
        usage = message.usage_metadata
        if usage:
            totals["input_tokens"] += usage.get("input_tokens", 0)
            totals["output_tokens"] += usage.get("output_tokens", 0)
            totals["cache_read"] += usage.get("input_token_details", {}).get("cache_read", 0) or 0
    return totals


class _TracedToolNode(ToolNode):
    """ToolNode whose run is a `node tools` span (each call is an `execute_tool` child)."""

    def __init__(self, graph: str, tools: Sequence[BaseTool], **options: Any) -> None:
        super().__init__(tools, **options)
        self._graph = graph

    async def _afunc(self, input: Any, config: RunnableConfig, runtime: Runtime[Any]) -> Any:
        with node_span(self._graph, "tools"):
            return await super()._afunc(input, config, runtime)


def build_tool_loop(
    *,
    model: BaseChatModel,
    tools: Sequence[BaseTool],
    prepare: Prepare,
    deps: ToolDeps,
    ai_type: AIType,
    context_schema: type[Any],
    name: str,
) -> CompiledStateGraph[AgentState, Any, Any, Any]:
    """Compile an agent graph around `model`, `tools` and the agent's own `prepare` node."""
    llm = model.bind_tools(list(tools), parallel_tool_calls=False)

    async def agent(state: AgentState) -> dict[str, Any]:
        if state["remaining_steps"] <= 3:
            log.warning("turn reached its step limit", steps=RECURSION_LIMIT)
            return {
                "messages": [AIMessage(LAST_STEP_REPLY)],
                "error": STEP_LIMIT_ERROR,
                "handoff": True,
            }
        overrides: dict[str, Any] = {"temperature": state.get("temperature", 0.3)}
        if state.get("model"):
            overrides["model"] = state["model"]
        try:
            response = await llm.bind(**overrides).ainvoke(build_prompt(state))
        except Exception as error:  # every model failure becomes the fallback reply
            log.warning("model call failed", error_type=type(error).__name__)
            return {"messages": [AIMessage(FALLBACK_REPLY)], "error": describe(error)}
        refused = unusable_answer(response)
        if refused is not None:
            log.warning("unusable model answer", reason=refused)
            return {"messages": [AIMessage(FALLBACK_REPLY)], "error": refused}
        return {"messages": [cleaned_answer(response)]}

    def after_prepare(state: AgentState) -> Literal["agent", "__end__"]:
        return "__end__" if state.get("silenced") or state.get("reply") else "agent"

    def after_agent(state: AgentState) -> Literal["tools", "finalize"]:
        last = state["messages"][-1]
        if state.get("error") is None and isinstance(last, AIMessage) and last.tool_calls:
            return "tools"
        return "finalize"

    async def finalize(state: AgentState, runtime: Runtime[Any]) -> dict[str, Any]:
        context: TurnContext = runtime.context
        produced = state["messages"][state.get("turn_start", 0) :]
        answers = [m for m in produced if isinstance(m, AIMessage)]
        reply = (clean_text(answers[-1].text) if answers else "") or FALLBACK_REPLY
        error = state.get("error")
        sources = [state.get("system_prompt", ""), state.get("context_prompt", "")]
        sources += [str(m.content) for m in produced if isinstance(m, ToolMessage)]
        today = date.fromisoformat(state["today"])
        ungrounded = [] if error else ungrounded_facts(reply, sources, today=today)
        if ungrounded:
            log.warning(
                "ungrounded facts in reply",
                conversation_id=context.conversation_id,
                facts=[f"{fact.kind}:{fact.text}" for fact in ungrounded],
            )
        usage = _usage(answers)
        model_name = next(
            (
                str(m.response_metadata["model_name"])
                for m in reversed(answers)
                if m.response_metadata.get("model_name")
            ),
            state.get("model"),
        )
        interaction: dict[str, Any] = {
            "organization_id": context.organization_id,
            "conversation_id": context.conversation_id or None,
            "ai_type": ai_type,
            "status": "error" if error else "success",
            "error_message": error,
            "model": model_name,
            "input_tokens": usage["input_tokens"],
            "output_tokens": usage["output_tokens"],
            "cached_input_tokens": usage["cache_read"],
            "tool_calls": sum(len(m.tool_calls) for m in answers),
            "ungrounded_facts": len(ungrounded),
            "duration_ms": int((time.perf_counter() - state.get("started", 0.0)) * 1000),
            "audio_seconds": float(state.get("audio_seconds") or 0.0),
            "images": int(state.get("images") or 0),
        }
        done = {"reply": reply, "ungrounded": [fact.text for fact in ungrounded]}
        if state.get("record_by_caller"):
            return {**done, "interaction": interaction}
        async with deps.sessions() as session, session.begin():
            session.add(AIInteraction(**interaction))
        return done

    graph = StateGraph(AgentState, context_schema=context_schema)
    graph.add_node("prepare", cast(Any, traced_node(name, "prepare", prepare)))
    graph.add_node("agent", traced_node(name, "agent", agent))
    graph.add_node(
        "tools",
        _TracedToolNode(
            name, tools, handle_tool_errors=tool_error_text, awrap_tool_call=ToolGuard()
        ),
    )
    graph.add_node("finalize", traced_node(name, "finalize", finalize))
    graph.add_edge(START, "prepare")
    graph.add_conditional_edges("prepare", after_prepare, ["agent", END])
    graph.add_conditional_edges("agent", after_agent, ["tools", "finalize"])
    graph.add_edge("tools", "agent")
    graph.add_edge("finalize", END)
    # The limit travels with the graph, so that LangGraph Studio and any direct `ainvoke`
    # get the graceful last step too, not LangGraph's default of 10,007 steps.
    return graph.compile(name=name).with_config(recursion_limit=RECURSION_LIMIT)
