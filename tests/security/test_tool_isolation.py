"""Every tool of both agents, called with A's trusted context and arguments naming B's rows.

Each tool must refuse, or act inside A only: its answer never shows B's names, phones or
pets, and B's rows (every table) are byte-for-byte the same afterwards. Aurora's proposals
are also confirmed, so the execution path is probed too. The tool lists come from the
factories, so a new tool without a probe fails here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import NOW
from tests.security.conftest import (
    B_ONLY_SERVICE,
    TOMORROW,
    Shop,
    World,
    org_snapshot,
    restore,
)
from zapvet.commands.confirmation import resolve
from zapvet.commands.proposals import Owner
from zapvet.graphs import loop
from zapvet.graphs.loop import tool_error_text
from zapvet.graphs.state import AgentState
from zapvet.tools.aurora import make_aurora_tools
from zapvet.tools.client import make_client_tools
from zapvet.tools.context import AuroraContext, ClientContext
from zapvet.tools.deps import ToolDeps

pytestmark = pytest.mark.anyio

Args = dict[str, Any]
Probes = Callable[[World], list[Args]]
INTERNAL_ERROR = "Erro interno"
NO_CLIENT_CONTEXT = "Não consigo identificar este atendimento"
NO_OWNER_CONTEXT = "Não consigo confirmar que esta conversa é do dono"
NOT_AUTHORIZED = "Este número não está autorizado a usar a Aurora"
LATER = "2026-11-27"


def _names(factory: Callable[[ToolDeps], list[BaseTool]]) -> list[str]:
    return [tool.name for tool in factory(ToolDeps(sessions=cast(Any, None)))]


#: Tool calls made, per tool (printed at the end of the module with `-s`).
CALLS: Counter[str] = Counter()
CLIENT_TOOLS = _names(make_client_tools)
AURORA_TOOLS = _names(make_aurora_tools)


def _appointments(b: Shop) -> list[int]:
    """One upcoming and one past appointment of each of B's clients."""
    return [b.upcoming[0], b.upcoming[-1], b.past[0], b.past[-1]]


def _clients(b: Shop) -> list[str]:
    """Ways to name B's clients: a name, part of one, a phone, `#id`s, the owner's phone."""
    return [b.names[0], "Beta", b.phones[1], *(f"#{c}" for c in b.contacts), b.owner_phone]


CLIENT_PROBES: dict[str, Probes] = {
    "register_pet": lambda w: [
        {"name": w.b.pets[0], "species": "cachorro"},
        {"name": w.b.pets[1], "species": "gato", "breed": "SRD", "age_years": 2},
    ],
    "check_availability": lambda w: [
        {"date": TOMORROW},
        {"date": TOMORROW, "service_type": B_ONLY_SERVICE},
        {"date": TOMORROW, "service_type": "banho"},
    ],
    "book_appointment": lambda w: [
        {
            "pet_name": w.b.pets[0],
            "service_type": "consulta",
            "preferred_date": TOMORROW,
            "preferred_time": "15:00",
        },
        {
            "pet_name": w.a.pets[0],
            "service_type": B_ONLY_SERVICE,
            "preferred_date": TOMORROW,
            "preferred_time": "15:00",
        },
        # B has Carla booked at 10:00 tomorrow: booking A's pet then touches A only.
        {
            "pet_name": w.a.pets[0],
            "service_type": "banho",
            "preferred_date": TOMORROW,
            "preferred_time": "10:00",
        },
    ],  # fmt: skip
    "escalate_to_human": lambda w: [
        {"reason": f"conversa #{w.b.conversations[0]} de {w.b.names[0]}"}
    ],
    "list_services": lambda w: [{}],
    "list_my_appointments": lambda w: [{}],
    "cancel_appointment": lambda w: [{"appointment_id": i} for i in _appointments(w.b)],
    "reschedule_appointment": lambda w: [
        {"appointment_id": i, "new_date": LATER, "new_time": "15:00"} for i in _appointments(w.b)
    ],
}

AURORA_PROBES: dict[str, Probes] = {
    "business_summary": lambda w: [{"start_date": "2026-11-01", "end_date": "2026-11-30"}],
    "ai_costs": lambda w: [{"start_date": "2020-01-01", "end_date": "2030-12-31"}],
    "care_report": lambda w: [{"start_date": "2020-01-01", "end_date": "2030-12-31"}],
    "list_appointments": lambda w: [{"date": TOMORROW}, {"date": "2026-11-24"}],
    "free_slots": lambda w: [
        {"date": TOMORROW},
        {"date": TOMORROW, "service_type": B_ONLY_SERVICE},
    ],
    "top_services": lambda w: [{"start_date": "2026-11-01", "end_date": "2026-11-30"}],
    "new_clients": lambda w: [{"start_date": "2020-01-01", "end_date": "2030-12-31"}],
    "inactive_clients": lambda w: [{}, {"days": 1}],
    "find_client": lambda w: [{"query": q} for q in [*_clients(w.b), w.b.pets[0]]],
    "create_appointment": lambda w: [
        *(
            {
                "client": q,
                "pet_name": w.b.pets[0],
                "service_type": "banho",
                "date": TOMORROW,
                "time": "15:00",
            }
            for q in _clients(w.b)
        ),
        {
            "client": w.a.names[0],
            "pet_name": w.b.pets[0],
            "service_type": "banho",
            "date": TOMORROW,
            "time": "15:00",
        },
        {
            "client": w.a.names[0],
            "pet_name": w.a.pets[0],
            "service_type": B_ONLY_SERVICE,
            "date": TOMORROW,
            "time": "15:00",
        },
    ],  # fmt: skip
    "cancel_appointment": lambda w: [{"appointment_id": i} for i in _appointments(w.b)],
    "reschedule_appointment": lambda w: [
        {"appointment_id": i, "new_date": LATER, "new_time": "15:00"} for i in _appointments(w.b)
    ],
    "mark_appointment": lambda w: [
        {"appointment_id": i, "status": ("completed", "no_show")[n % 2]}
        for n, i in enumerate(_appointments(w.b))
    ],
    "update_contact": lambda w: [
        {"client": q, "name": "Invadido", "notes": "x"} for q in _clients(w.b)
    ],
    "hand_back_conversation": lambda w: [{"client": q} for q in _clients(w.b)],
    "send_message": lambda w: [{"client": q, "text": "Oi, é a loja"} for q in _clients(w.b)],
    # By phone, B's client is a number A never saw: blocking it touches A's rows only.
    "block_contact": lambda w: [{"client": q} for q in _clients(w.b)],
    "unblock_contact": lambda w: [{"client": q} for q in _clients(w.b)],
    "forget_client": lambda w: [{"client": q} for q in _clients(w.b)],
}


class _Quiet:
    """A logger that drops everything."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class _Sessions:
    """A session factory the test points at its own event loop's engine: the graphs (slow
    to compile) are built once per module and outlive each test's loop."""

    maker: async_sessionmaker[AsyncSession] | None = None

    def __call__(self) -> AsyncSession:
        assert self.maker is not None, "no session factory for this test"
        return self.maker()


@dataclass(frozen=True)
class Graphs:
    client: CompiledStateGraph[Any, Any, Any, Any]
    aurora: CompiledStateGraph[Any, Any, Any, Any]
    deps: ToolDeps


@pytest.fixture(scope="module")
def graphs() -> Graphs:
    sessions = _Sessions()
    deps = ToolDeps(sessions=cast(Any, sessions), clock=lambda: NOW)
    return Graphs(
        client=bare_graph(make_client_tools(deps), ClientContext),
        aurora=bare_graph(make_aurora_tools(deps), AuroraContext),
        deps=deps,
    )


@pytest.fixture
def tools(graphs: Graphs, shared_deps: ToolDeps) -> Iterator[Graphs]:
    """The module's graphs, talking to the shared database from this test's loop."""
    holder = cast(_Sessions, graphs.deps.sessions)
    holder.maker = shared_deps.sessions
    yield graphs
    holder.maker = None


def bare_graph(tools: list[BaseTool], schema: type) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Only the tools, as the agents' ToolNode runs them (and reports their refusals)."""
    graph = StateGraph(AgentState, context_schema=schema)
    graph.add_node("tools", ToolNode(tools, handle_tool_errors=tool_error_text))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    return graph.compile(name="aurora" if schema is AuroraContext else "client")


async def call(
    graph: CompiledStateGraph[Any, Any, Any, Any], context: object, tool: str, args: Args
) -> ToolMessage:
    CALLS[f"{graph.name} {tool}"] += 1
    request = {"name": tool, "args": args, "id": "call_probe", "type": "tool_call"}
    state = await graph.ainvoke(
        {"messages": [AIMessage("", tool_calls=[request])]}, context=context
    )
    (message,) = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    return message


def client_of(shop: Shop, index: int = 0) -> ClientContext:
    return ClientContext(
        organization_id=shop.org_id,
        contact_id=shop.contacts[index],
        conversation_id=shop.conversations[index],
    )


def owner_of(shop: Shop, *, number_of: Shop | None = None) -> AuroraContext:
    return AuroraContext(
        organization_id=shop.org_id,
        owner_number_id=(number_of or shop).owner_number_id,
        contact_id=shop.owner_contact_id,
        conversation_id=shop.owner_conversation_id,
    )


def leaks(content: str, shop: Shop, args: Args | None = None) -> list[str]:
    """The texts of `shop` (and B's own service and price) that appear in `content`, except
    those the caller itself wrote in `args` (a refusal may quote the query)."""
    asked = json.dumps(args or {}, ensure_ascii=False).casefold()
    marks = [*shop.secrets, B_ONLY_SERVICE, "777,77"]
    return [m for m in marks if m.casefold() in content.casefold() and m.casefold() not in asked]


def assert_isolated(
    message: ToolMessage, engine: Engine, world: World, before: Any, args: Args
) -> None:
    content = str(message.content)
    assert not leaks(content, world.b, args), content
    assert INTERNAL_ERROR not in content, content
    assert org_snapshot(engine, world.b.org_id) == before, content


async def confirm_any_proposal(deps: ToolDeps, engine: Engine, world: World) -> str | None:
    """Say "sim" to A's owner's open proposal, as the owner would; the reply, if any."""
    with engine.connect() as conn:
        payload = conn.execute(
            text(
                "SELECT payload FROM aurora_pending_actions WHERE owner_number_id = :owner"
                " AND status = 'pending'"
            ),
            {"owner": world.a.owner_number_id},
        ).scalar_one_or_none()
    if payload is None:
        return None
    assert payload.get("contact_id") not in world.b.contacts, payload
    assert payload.get("appointment_id") not in world.b.appointments, payload
    owner = Owner(world.a.org_id, world.a.owner_number_id)
    async with deps.sessions() as session, session.begin():
        reply = await resolve(session, owner, "yes", NOW)
    return reply


@pytest.fixture(scope="module", autouse=True)
def report_calls() -> Iterator[None]:
    yield
    print(f"\ntool probes: {sum(CALLS.values())} calls", dict(sorted(CALLS.items())))  # noqa: T201


@pytest.fixture(autouse=True)
def pristine(world: World, shared_engine: Engine) -> Iterator[None]:
    """Every test starts from the same rows: what a probe changed in A is put back after."""
    before = org_snapshot(shared_engine, world.a.org_id)
    yield
    restore(shared_engine, world.a.org_id, before)


def test_every_tool_has_a_cross_organization_probe() -> None:
    assert sorted(CLIENT_PROBES) == sorted(CLIENT_TOOLS)
    assert sorted(AURORA_PROBES) == sorted(AURORA_TOOLS)


@pytest.mark.parametrize("tool", CLIENT_TOOLS)
async def test_client_tool_never_reaches_another_organization(
    tool: str,
    world: World,
    shared_engine: Engine,
    tools: Graphs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probes = CLIENT_PROBES.get(tool)
    if probes is None:
        pytest.fail(f"client tool {tool!r} has no cross-organization probe")
    engine = shared_engine
    graph = tools.client
    calls = probes(world)
    everything = org_snapshot(engine, world.a.org_id), org_snapshot(engine, world.b.org_id)
    for context in (None, ClientContext(), ClientContext(organization_id=world.a.org_id)):
        refused = await call(graph, context, tool, calls[0])
        assert refused.status == "error" and NO_CLIENT_CONTEXT in str(refused.content)
    assert (
        org_snapshot(engine, world.a.org_id),
        org_snapshot(engine, world.b.org_id),
    ) == everything
    before = everything[1]
    for args in calls:
        message = await call(graph, client_of(world.a), tool, args)
        assert_isolated(message, engine, world, before, args)
    # A context mixing A's organization with B's contact (never built by the router): the
    # database's composite foreign keys refuse what the tools' filters let through, so an
    # internal error is acceptable here (its traceback is not logged: rich renders it slowly).
    monkeypatch.setattr(loop, "log", _Quiet())
    mixed = ClientContext(
        organization_id=world.a.org_id,
        contact_id=world.b.contacts[0],
        conversation_id=world.b.conversations[0],
    )
    for args in calls:
        message = await call(graph, mixed, tool, args)
        assert not leaks(str(message.content), world.b, args), message.content
        assert org_snapshot(engine, world.b.org_id) == before


@pytest.mark.parametrize("tool", AURORA_TOOLS)
async def test_aurora_tool_never_reaches_another_organization(
    tool: str, world: World, shared_engine: Engine, tools: Graphs
) -> None:
    probes = AURORA_PROBES.get(tool)
    if probes is None:
        pytest.fail(f"Aurora tool {tool!r} has no cross-organization probe")
    engine = shared_engine
    graph = tools.aurora
    calls = probes(world)
    everything = org_snapshot(engine, world.a.org_id), org_snapshot(engine, world.b.org_id)
    refusals: dict[str, list[AuroraContext | None]] = {
        NO_OWNER_CONTEXT: [None, AuroraContext(), AuroraContext(organization_id=world.a.org_id)],
        NOT_AUTHORIZED: [
            owner_of(world.a, number_of=world.b),  # A's organization, B's owner number
            owner_of(world.b, number_of=world.a),  # B's organization, A's owner number
        ],
    }
    for expected, contexts in refusals.items():
        for context in contexts:
            refused = await call(graph, context, tool, calls[0])
            assert refused.status == "error" and expected in str(refused.content), refused.content
    assert (
        org_snapshot(engine, world.a.org_id),
        org_snapshot(engine, world.b.org_id),
    ) == everything
    before = everything[1]
    for args in calls:
        message = await call(graph, owner_of(world.a), tool, args)
        assert_isolated(message, engine, world, before, args)
        reply = await confirm_any_proposal(tools.deps, engine, world)
        assert not leaks(reply or "", world.b), reply
        assert org_snapshot(engine, world.b.org_id) == before, reply


async def test_a_client_cannot_see_or_change_another_clients_appointments(
    world: World, shared_engine: Engine, tools: Graphs
) -> None:
    """Marina and Paulo are clients of the same shop: Marina's tools never reach Paulo's."""
    engine = shared_engine
    graph = tools.client
    marina = client_of(world.a, 0)
    paulo = Shop(org_id=world.a.org_id, owner_number_id=0, owner_phone="")
    paulo.names, paulo.phones, paulo.pets = world.a.names[1:], world.a.phones[1:], world.a.pets[1:]
    with engine.connect() as conn:
        theirs = list(
            conn.execute(
                text("SELECT id FROM appointments WHERE contact_id = :c ORDER BY id"),
                {"c": world.a.contacts[1]},
            ).scalars()
        )

    def snapshot() -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    text("SELECT * FROM appointments WHERE contact_id = :c ORDER BY id"),
                    {"c": world.a.contacts[1]},
                )
            ]

    before = snapshot()
    listed = await call(graph, marina, "list_my_appointments", {})
    assert not leaks(str(listed.content), paulo)
    assert not any(f'"appointment_id": {i},' in str(listed.content) for i in theirs)
    for appointment_id in theirs:
        for tool, args in (
            ("cancel_appointment", {"appointment_id": appointment_id}),
            ("reschedule_appointment",
             {"appointment_id": appointment_id, "new_date": LATER, "new_time": "15:00"}),
        ):  # fmt: skip
            refused = await call(graph, marina, tool, args)
            assert refused.status == "error", refused.content
            assert "Não encontrei o agendamento" in str(refused.content)
    booked = await call(
        graph,
        marina,
        "book_appointment",
        {"pet_name": world.a.pets[1], "service_type": "banho",
         "preferred_date": LATER, "preferred_time": "10:00"},
    )  # fmt: skip
    assert booked.status == "error" and "não está cadastrado" in str(booked.content)
    assert snapshot() == before
