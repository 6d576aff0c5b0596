"""Play one scenario against a real database: build its world, play the turns, check the end.

Each turn goes through the scenario's own agent graph (`GRAPHS`) and the agent-neutral
`graphs.turn.run_turn`, with a frozen clock; the world is dropped afterwards. A turn with
media items is first stored and prepared as the worker does (`evals.media`). A `via: drain`
scenario's turns go through the worker's drain instead (`evals.worker`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.graph.state import CompiledStateGraph
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Session

from zapvet import db
from zapvet.evals.checks import check_end, check_turn
from zapvet.evals.media import MediaPlayer, MediaRig
from zapvet.evals.outcome import ScenarioRun, TurnRecord
from zapvet.evals.scenario import ModelStep, Scenario, ScenarioError, Turn
from zapvet.evals.worker import DrainPlayer, Worker
from zapvet.evals.world import World, build_world, drop_world, send_care_invitation
from zapvet.graphs.aurora.graph import build_graph as build_aurora_graph
from zapvet.graphs.client.graph import build_graph as build_client_graph
from zapvet.graphs.history import to_langchain
from zapvet.graphs.state import AgentState
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.llm.tokens import count_tokens
from zapvet.tools.deps import ToolDeps

__all__ = [
    "GRAPHS",
    "MediaRig",
    "ModelFactory",
    "ScenarioRun",
    "TurnRecord",
    "Worker",
    "run_scenario",
    "scripted_reply",
]

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


def _text(message: BaseMessage) -> str:
    """A message's words, without the image parts."""
    if isinstance(message.content, str):
        return message.content
    return " ".join(
        str(part["text"])
        for part in message.content
        if isinstance(part, dict) and part.get("type") == "text"
    )


async def _agent_turn(
    graph: Any, world: World, history: list[BaseMessage], user: list[str]
) -> TurnRecord:
    result = await run_turn(graph, world.context, history)
    produced = [m for m in result.messages if isinstance(m, AIMessage) and m.usage_metadata]
    return TurnRecord(
        user=user,
        reply=result.reply,
        tools=[str(m.name) for m in result.messages if isinstance(m, ToolMessage)],
        ungrounded=result.ungrounded,
        error=result.error,
        prompt_tokens=[m.usage_metadata["input_tokens"] for m in produced if m.usage_metadata],
        static_tokens=count_tokens(result.system_prompt),
    )


def _without_agent(turn: Turn, reply: str | None, error: str | None) -> TurnRecord:
    return TurnRecord(
        user=turn.texts(),
        reply=reply,
        tools=[],
        ungrounded=[],
        error=error,
        prompt_tokens=[],
        static_tokens=0,
        agent=False,
    )


async def _media_turn(
    graph: Any,
    world: World,
    history: list[BaseMessage],
    player: MediaPlayer,
    turn: Turn,
    now: datetime,
) -> TurnRecord:
    """A turn holding media, decided as the drain decides it: silence when nothing waits
    (stickers), the notice when nothing is usable, else the agent on the stored rows."""
    play = await player.play(turn.items(), now)
    try:
        if play.media is None:
            return _without_agent(turn, None, None)
        trouble = play.media.trouble
        if not play.media.usable:
            history += to_langchain(play.rows)
            return _without_agent(turn, play.media.notice, trouble)
        start = len(history)
        said = to_langchain(play.rows, play.media.images)
        history += said
        record = await _agent_turn(graph, world, history, turn.texts())
        record.error = record.error or trouble
        record.heard = [_text(message) for message in said]
        # Later turns see this turn's photos as the worker's history shows them: described.
        history[start:] = to_langchain(play.rows)
        return record
    finally:
        await player.close(play, now)


async def run_scenario(
    scenario: Scenario,
    database_url: str,
    *,
    model_factory: ModelFactory | None = None,
    media: MediaRig | None = None,
    worker: Worker | None = None,
) -> ScenarioRun:
    """Play `scenario` on the (migrated) database at `database_url`.

    With no `model_factory` the scenario's scripted model outputs are played; otherwise the
    factory's model answers and only the end state and facts are checked. Turns with media
    items need `media`, where their bytes are served and transcribed (`evals.media`); a
    `via: drain` scenario needs the worker's drain (`worker`, see `evals.worker`).
    """
    run = ScenarioRun(name=scenario.name)
    token = uuid.uuid4().hex[:8]
    engine = db.build_engine(database_url, pool_size=1)
    async_engine = db.build_async_engine(database_url, pool_size=3)
    world: World | None = None
    try:
        async with httpx.AsyncClient() as http:
            world = build_world(engine, scenario, token)
            if media is None and any(turn.has_media() for turn in scenario.turns):
                raise ScenarioError("media turns need a media rig (as `zapvet eval` starts)")
            if worker is None and scenario.via == "drain":
                raise ScenarioError("`via: drain` needs the worker (as `zapvet eval` hands in)")
            rigs = _Rigs(media, worker, database_url)
            await _play(scenario, world, run, model_factory, async_engine, rigs, http)
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


@dataclass(frozen=True)
class _Rigs:
    """What the caller handed in for media turns and drain turns."""

    media: MediaRig | None
    worker: Worker | None
    database_url: str


async def _play(
    scenario: Scenario,
    world: World,
    run: ScenarioRun,
    model_factory: ModelFactory | None,
    async_engine: AsyncEngine,
    rigs: _Rigs,
    http: httpx.AsyncClient,
) -> None:
    scripted = model_factory is None
    model: BaseChatModel = ScriptedChatModel() if scripted else model_factory()  # type: ignore[misc]
    arrivals = [moment.astimezone(UTC) for moment in scenario.arrivals()]
    clock = [arrivals[0]]
    sessions = db.async_session_maker(async_engine)
    invitation = await send_care_invitation(sessions, scenario, world)  # in the stored history
    if scenario.via == "drain":
        await _play_drains(scenario, world, run, model, rigs, sessions, clock, scripted)
        return
    deps = ToolDeps(sessions=sessions, clock=lambda: clock[0])
    graph = GRAPHS[scenario.agent](model, deps)
    player = (
        MediaPlayer(
            rigs.media,
            sessions,
            http,
            organization_id=world.org_id,
            conversation_id=world.context.conversation_id,
            sender=scenario.contact,
        )
        if rigs.media is not None
        else None
    )
    history: list[BaseMessage] = [AIMessage(invitation)] if invitation else []
    for index, turn in enumerate(scenario.turns):
        clock[0] = arrivals[index]
        _script(model, turn, world)
        if turn.has_media():
            assert player is not None
            record = await _media_turn(graph, world, history, player, turn, clock[0])
        else:
            history += [HumanMessage(text) for text in turn.texts()]
            record = await _agent_turn(graph, world, history, turn.texts())
            record.heard = turn.texts()
        record.sent = [record.reply] if record.reply is not None else []
        _close_turn(run, model, index, turn, record, scripted)
        if record.reply is not None:
            history.append(AIMessage(record.reply))


async def _play_drains(
    scenario: Scenario,
    world: World,
    run: ScenarioRun,
    model: BaseChatModel,
    rigs: _Rigs,
    sessions: Any,
    clock: list[datetime],
    scripted: bool,
) -> None:
    """Every turn through the worker's drain, each until the next turn's messages arrive."""
    assert rigs.worker is not None
    arrivals = [moment.astimezone(UTC) for moment in scenario.arrivals()]
    async with rigs.worker(rigs.database_url, model, lambda: clock[0]) as drain:
        player = DrainPlayer(
            drain,
            sessions,
            clock,
            organization_id=world.org_id,
            conversation_id=world.context.conversation_id,
            contact_id=world.contact_id,
            sender=scenario.contact,
        )
        for index, turn in enumerate(scenario.turns):
            _script(model, turn, world)
            horizon = arrivals[index + 1] if index + 1 < len(arrivals) else None
            record = await player.play(turn, arrivals[index], horizon)
            _close_turn(run, model, index, turn, record, scripted)


def _script(model: BaseChatModel, turn: Turn, world: World) -> None:
    """Hand the scripted model this turn's outputs."""
    if isinstance(model, ScriptedChatModel):
        model.add(*(scripted_reply(step, world.refs) for step in turn.model))


def _close_turn(
    run: ScenarioRun,
    model: BaseChatModel,
    index: int,
    turn: Turn,
    record: TurnRecord,
    scripted: bool,
) -> None:
    """Record the turn, check it, and drop the scripted outputs it left unused."""
    run.turns.append(record)
    run.failures += check_turn(index, turn, record, scripted)
    if isinstance(model, ScriptedChatModel) and model.remaining:
        run.failures.append(f"turn {index + 1}: {model.remaining} scripted outputs unused")
        model.script[:] = model.script[: len(model.script) - model.remaining]
