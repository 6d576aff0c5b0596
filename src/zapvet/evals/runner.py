"""Play one scenario against a real database: build its world, play the turns, check the end.

Each turn goes through the scenario's own agent graph (`GRAPHS`) and the agent-neutral
`graphs.turn.run_turn`, with a frozen clock; the world is dropped afterwards.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.graph.state import CompiledStateGraph
from sqlmodel import Session

from zapvet import db
from zapvet.evals.checks import check_end, check_turn
from zapvet.evals.outcome import ScenarioRun, TurnRecord
from zapvet.evals.scenario import ModelStep, Scenario
from zapvet.evals.world import World, build_world, drop_world
from zapvet.graphs.aurora.graph import build_graph as build_aurora_graph
from zapvet.graphs.client.graph import build_graph as build_client_graph
from zapvet.graphs.state import AgentState
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.llm.tokens import count_tokens
from zapvet.tools.deps import ToolDeps

__all__ = ["GRAPHS", "ModelFactory", "ScenarioRun", "TurnRecord", "run_scenario", "scripted_reply"]

_REF = re.compile(r"\$\{(\w+)\}")
ModelFactory = Callable[[], BaseChatModel]
GraphBuilder = Callable[[BaseChatModel, ToolDeps], CompiledStateGraph[AgentState, Any, Any, Any]]

#: The graph each scenario `agent` plays against.
GRAPHS: Mapping[str, GraphBuilder] = {"client": build_client_graph, "aurora": build_aurora_graph}


def _resolve(value: Any, refs: dict[str, int]) -> Any:
    """Replace `${ref}` in scripted arguments with the ids the setup created."""
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:
            return refs[whole[1]]
        return _REF.sub(lambda m: str(refs[m[1]]), value)
    if isinstance(value, dict):
        return {k: _resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, refs) for v in value]
    return value


def scripted_reply(step: ModelStep, refs: dict[str, int]) -> AIMessage | Exception:
    """One scripted model output as the scripted model plays it."""
    if step.error is not None:
        return TimeoutError(step.error) if "timeout" in step.error else RuntimeError(step.error)
    calls = [
        {"name": c.name, "args": _resolve(c.args, refs), "id": None, "type": "tool_call"}
        for c in step.tool_calls()
    ]
    return AIMessage(step.say or "", tool_calls=calls)


async def run_scenario(
    scenario: Scenario, database_url: str, *, model_factory: ModelFactory | None = None
) -> ScenarioRun:
    """Play `scenario` on the (migrated) database at `database_url`.

    With no `model_factory` the scenario's scripted model outputs are played; otherwise the
    factory's model answers and only the end state and facts are checked.
    """
    run = ScenarioRun(name=scenario.name)
    token = uuid.uuid4().hex[:8]
    engine = db.build_engine(database_url, pool_size=1)
    async_engine = db.build_async_engine(database_url, pool_size=3)
    world: World | None = None
    try:
        world = build_world(engine, scenario, token)
        scripted = model_factory is None
        model: BaseChatModel = ScriptedChatModel() if scripted else model_factory()  # type: ignore[misc]
        clock = [scenario.now.astimezone(UTC)]
        deps = ToolDeps(sessions=db.async_session_maker(async_engine), clock=lambda: clock[0])
        graph = GRAPHS[scenario.agent](model, deps)
        history: list[BaseMessage] = []
        for index, turn in enumerate(scenario.turns):
            if turn.at is not None:
                clock[0] = turn.at.astimezone(UTC)
            if isinstance(model, ScriptedChatModel):
                model.add(*(scripted_reply(step, world.refs) for step in turn.model))
            history += [HumanMessage(text) for text in turn.texts()]
            result = await run_turn(graph, world.context, history)
            produced = [m for m in result.messages if isinstance(m, AIMessage) and m.usage_metadata]
            record = TurnRecord(
                user=turn.texts(),
                reply=result.reply,
                tools=[str(m.name) for m in result.messages if isinstance(m, ToolMessage)],
                ungrounded=result.ungrounded,
                error=result.error,
                prompt_tokens=[
                    m.usage_metadata["input_tokens"] for m in produced if m.usage_metadata
                ],
                static_tokens=count_tokens(result.system_prompt),
            )
            run.turns.append(record)
            run.failures += check_turn(index, turn, record, scripted)
            if isinstance(model, ScriptedChatModel) and model.remaining:
                run.failures.append(f"turn {index + 1}: {model.remaining} scripted outputs unused")
                model.script[:] = model.script[: len(model.script) - model.remaining]
            if result.reply is not None:
                history.append(AIMessage(result.reply))
        with Session(engine) as session:
            run.failures += check_end(session, scenario, world, run)
    except Exception as error:  # a crashing scenario is a failed run, reported, not raised
        run.failures.append(f"crashed: {type(error).__name__}: {error}")
    finally:
        if world is not None:
            drop_world(engine, world)
        engine.dispose()
        await async_engine.dispose()
    return run
