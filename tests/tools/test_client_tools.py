"""The client tools, called the way the model calls them: through the graph's ToolNode."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
from sqlmodel import Session, col, select

from tests.conftest import EXAMPLE_ORG, NOW, SAO_PAULO, start_conversation
from zapvet.graphs.client.graph import build_graph, tool_error_text
from zapvet.graphs.state import AgentState
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import Appointment, Conversation, Organization, Pet, Resource, Service
from zapvet.org import apply_spec, parse_spec
from zapvet.scheduling import booking
from zapvet.tools.client import make_client_tools
from zapvet.tools.context import ClientContext
from zapvet.tools.deps import ToolDeps

pytestmark = pytest.mark.anyio

CONSULTA = "Consulta Veterinária Geral"
TOMORROW = "2026-11-26"
NO_IDENTITY = "Não consigo identificar este atendimento; nenhuma ação foi feita."
INTERNAL_ERROR = "Erro interno ao executar a ferramenta; nada foi alterado."
CONTRACT = {
    "register_pet": {"name", "species", "breed", "age_years"},
    "check_availability": {"date", "service_type"},
    "book_appointment": {"pet_name", "service_type", "preferred_date", "preferred_time"},
    "escalate_to_human": {"reason"},
    "list_services": set(),
    "list_my_appointments": set(),
    "cancel_appointment": {"appointment_id"},
    "reschedule_appointment": {"appointment_id", "new_date", "new_time"},
}
#: One well-formed call of every tool, for the refusals that must not depend on arguments.
EVERY_TOOL: dict[str, dict[str, object]] = {
    "register_pet": {"name": "Rex", "species": "cachorro"},
    "check_availability": {"date": TOMORROW, "service_type": "consulta"},
    "book_appointment": {
        "pet_name": "Rex",
        "service_type": "consulta",
        "preferred_date": TOMORROW,
        "preferred_time": "10:00",
    },
    "escalate_to_human": {"reason": "quer falar com alguém"},
    "list_services": {},
    "list_my_appointments": {},
    "cancel_appointment": {"appointment_id": 1},
    "reschedule_appointment": {"appointment_id": 1, "new_date": TOMORROW, "new_time": "11:00"},
}


# -- driving the tools ----------------------------------------------------------------------


def call(tool: str, **args: object) -> dict[str, Any]:
    return {"name": tool, "args": args, "id": None, "type": "tool_call"}


async def invoke(deps: ToolDeps, context: ClientContext, tool: str, **args: object) -> ToolMessage:
    """Run one client turn in which the model makes exactly this tool call, then says "ok"."""
    model = ScriptedChatModel(
        script=[AIMessage("", tool_calls=[call(tool, **args)]), AIMessage("ok")]
    )
    result = await run_turn(build_graph(model, deps), context, [HumanMessage("Oi")])
    assert result.reply == "ok" and result.error is None
    (message,) = [m for m in result.messages if isinstance(m, ToolMessage)]
    return message


async def succeed(
    deps: ToolDeps, context: ClientContext, tool: str, **args: object
) -> dict[str, Any]:
    message = await invoke(deps, context, tool, **args)
    assert message.status == "success", message.content
    answer: dict[str, Any] = json.loads(str(message.content))
    return answer


async def refuse(deps: ToolDeps, context: ClientContext, tool: str, **args: object) -> str:
    message = await invoke(deps, context, tool, **args)
    assert message.status == "error", message.content
    return str(message.content)


def bare_tool_graph(deps: ToolDeps) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Just the tools, so that no `prepare` node silences a turn without context."""
    graph = StateGraph(AgentState, context_schema=ClientContext)
    graph.add_node("tools", ToolNode(make_client_tools(deps), handle_tool_errors=tool_error_text))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    return graph.compile()


async def book_rex(
    deps: ToolDeps, context: ClientContext, time: str = "10:00", day: str = TOMORROW
) -> int:
    """Register Rex (idempotent) and book him a consulta; the appointment id."""
    await succeed(deps, context, "register_pet", name="Rex", species="cachorro")
    booked = await succeed(
        deps,
        context,
        "book_appointment",
        pet_name="Rex",
        service_type="consulta",
        preferred_date=day,
        preferred_time=time,
    )
    appointment_id: int = booked["appointment_id"]
    return appointment_id


def grid(first: str, last: str) -> list[str]:
    """Every start on the 30-minute grid from `first` to `last`, inclusive."""
    start, end = (datetime.strptime(t, "%H:%M") for t in (first, last))
    steps = int((end - start) / timedelta(minutes=30))
    return [f"{start + timedelta(minutes=30 * i):%H:%M}" for i in range(steps + 1)]


def local(day: str, time: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=SAO_PAULO)


# -- reading the database -------------------------------------------------------------------


def pets(session: Session) -> list[Pet]:
    session.expire_all()
    return list(session.exec(select(Pet).order_by(col(Pet.id))))


def appointments(session: Session) -> list[Appointment]:
    session.expire_all()
    return list(session.exec(select(Appointment).order_by(col(Appointment.id))))


def appointment(session: Session, appointment_id: int) -> Appointment:
    session.expire_all()
    found = session.get(Appointment, appointment_id)
    assert found is not None
    return found


def insert_appointment(
    session: Session,
    context: ClientContext,
    service: str,
    resource: str,
    start: datetime,
    **extra: Any,
) -> int:
    """An appointment written behind the tools' back (history, staff bookings)."""
    row = session.exec(
        select(Service).where(
            Service.organization_id == context.organization_id, Service.name == service
        )
    ).one()
    who = session.exec(
        select(Resource).where(
            Resource.organization_id == context.organization_id, Resource.name == resource
        )
    ).one()
    assert row.id is not None and who.id is not None
    booked = Appointment(
        organization_id=context.organization_id,
        contact_id=context.contact_id,
        service_id=row.id,
        resource_id=who.id,
        starts_at=start,
        ends_at=start + timedelta(minutes=row.duration_minutes),
        price_cents=row.price_cents,
        **extra,
    )
    session.add(booked)
    session.commit()
    assert booked.id is not None
    return booked.id


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def neighbour(session: Session, petfeliz: Organization) -> ClientContext:
    """Another customer of the same pet shop."""
    return start_conversation(session, petfeliz, "5511988887777")


@pytest.fixture
def other_org(session: Session, petfeliz: Organization) -> Organization:
    """A second pet shop from the same file, under its own slug, instance and consulta price."""
    text = EXAMPLE_ORG.read_text(encoding="utf-8")
    for old, new in [
        ('slug = "petfeliz"', 'slug = "bichofeliz"'),
        ('instance = "petfeliz"', 'instance = "bichofeliz"'),
        ('price = "120.00"', 'price = "150.00"'),
    ]:
        assert old in text
        text = text.replace(old, new)
    report = apply_spec(session, parse_spec(text))
    session.commit()
    org = session.get(Organization, report.organization_id)
    assert org is not None and org.id != petfeliz.id
    return org


@pytest.fixture
def stranger(session: Session, other_org: Organization) -> ClientContext:
    """A customer of the second pet shop, writing from the first customer's phone number."""
    return start_conversation(session, other_org, "5511999999999")


# -- 1. trusted identity --------------------------------------------------------------------


async def test_tool_schemas_offer_only_the_contract_arguments(
    deps: ToolDeps, client_context: ClientContext
) -> None:
    model = ScriptedChatModel(script=[AIMessage("Oi!")])
    await run_turn(build_graph(model, deps), client_context, [HumanMessage("Oi")])

    offered = {t["function"]["name"]: t["function"]["parameters"] for t in model.calls[0]["tools"]}
    assert {name: set(p["properties"]) for name, p in offered.items()} == CONTRACT
    assert {name: set(p.get("required", [])) for name, p in offered.items()} == {
        "register_pet": {"name", "species"},
        "check_availability": {"date"},
        "book_appointment": CONTRACT["book_appointment"],
        "escalate_to_human": {"reason"},
        "list_services": set(),
        "list_my_appointments": set(),
        "cancel_appointment": {"appointment_id"},
        "reschedule_appointment": CONTRACT["reschedule_appointment"],
    }


@pytest.mark.parametrize("tool", sorted(EVERY_TOOL))
@pytest.mark.parametrize("who", ["none", "empty", "no_contact", "no_conversation"])
async def test_tools_without_trusted_context_refuse_and_write_nothing(
    deps: ToolDeps, client_context: ClientContext, session: Session, tool: str, who: str
) -> None:
    context = {
        "none": None,
        "empty": ClientContext(),
        "no_contact": ClientContext(
            organization_id=client_context.organization_id,
            conversation_id=client_context.conversation_id,
        ),
        "no_conversation": ClientContext(
            organization_id=client_context.organization_id,
            contact_id=client_context.contact_id,
        ),
    }[who]
    request = AIMessage("", tool_calls=[{**call(tool, **EVERY_TOOL[tool]), "id": "call_1"}])

    state = await bare_tool_graph(deps).ainvoke({"messages": [request]}, context=context)

    (message,) = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert (message.content, message.status) == (NO_IDENTITY, "error")
    assert not state.get("escalated")
    assert pets(session) == [] and appointments(session) == []
    conversation = session.get(Conversation, client_context.conversation_id)
    assert conversation is not None
    session.refresh(conversation)
    assert conversation.status == "active" and conversation.escalation_reason is None


# -- 2. customers of one pet shop -----------------------------------------------------------


async def test_list_my_appointments_hides_another_customers_appointments(
    deps: ToolDeps, client_context: ClientContext, neighbour: ClientContext
) -> None:
    mine = await book_rex(deps, client_context)

    assert await succeed(deps, neighbour, "list_my_appointments") == {"appointments": []}
    listed = await succeed(deps, client_context, "list_my_appointments")
    assert [a["appointment_id"] for a in listed["appointments"]] == [mine]


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("cancel_appointment", {}),
        ("reschedule_appointment", {"new_date": "2026-11-27", "new_time": "09:00"}),
    ],
)
async def test_appointment_of_another_customer_reads_as_not_found(
    deps: ToolDeps,
    client_context: ClientContext,
    neighbour: ClientContext,
    session: Session,
    tool: str,
    args: dict[str, object],
) -> None:
    mine = await book_rex(deps, client_context)
    before = appointment(session, mine)
    missing = mine + 1000

    taken = await refuse(deps, neighbour, tool, appointment_id=mine, **args)
    absent = await refuse(deps, neighbour, tool, appointment_id=missing, **args)

    assert taken.startswith(f"Não encontrei o agendamento #{mine} entre os agendamentos")
    assert taken.replace(f"#{mine}", "#N") == absent.replace(f"#{missing}", "#N")
    after = appointment(session, mine)
    assert (after.status, after.starts_at, after.cancelled_at) == (
        "scheduled",
        before.starts_at,
        None,
    )
    assert len(appointments(session)) == 1


async def test_book_appointment_refuses_another_customers_pet(
    deps: ToolDeps, client_context: ClientContext, neighbour: ClientContext, session: Session
) -> None:
    await book_rex(deps, client_context)

    refusal = await refuse(
        deps,
        neighbour,
        "book_appointment",
        pet_name="Rex",
        service_type="consulta",
        preferred_date=TOMORROW,
        preferred_time="11:00",
    )

    assert refusal.startswith("O pet 'Rex' não está cadastrado para este cliente.")
    assert len(appointments(session)) == 1


async def test_register_pet_with_another_customers_pet_name_creates_a_pet_of_ones_own(
    deps: ToolDeps, client_context: ClientContext, neighbour: ClientContext, session: Session
) -> None:
    await succeed(
        deps, client_context, "register_pet", name="Rex", species="cachorro", breed="Golden"
    )

    answer = await succeed(deps, neighbour, "register_pet", name="Rex", species="gato", age_years=2)

    assert answer["status"] == "cadastrado"
    theirs, mine = pets(session)
    assert (theirs.contact_id, theirs.species, theirs.breed, theirs.age_years) == (
        client_context.contact_id,
        "cachorro",
        "Golden",
        None,
    )
    assert (mine.id, mine.contact_id, mine.species, mine.age_years) == (
        answer["pet_id"],
        neighbour.contact_id,
        "gato",
        2,
    )
    booked = await succeed(
        deps,
        neighbour,
        "book_appointment",
        pet_name="Rex",
        service_type="consulta",
        preferred_date=TOMORROW,
        preferred_time="11:00",
    )
    assert appointment(session, booked["appointment_id"]).pet_id == mine.id


async def test_tools_ignore_identity_arguments_smuggled_by_the_model(
    deps: ToolDeps, client_context: ClientContext, neighbour: ClientContext, session: Session
) -> None:
    mine = await book_rex(deps, client_context)
    forged = {
        "organization_id": client_context.organization_id,
        "contact_id": client_context.contact_id,
        "conversation_id": client_context.conversation_id,
    }

    listed = await succeed(deps, neighbour, "list_my_appointments", **forged)
    injected = await succeed(deps, neighbour, "list_my_appointments", runtime={"context": forged})
    cancelled = await refuse(
        deps, neighbour, "cancel_appointment", appointment_id=mine, runtime={"context": forged}
    )

    assert listed == injected == {"appointments": []}
    assert cancelled.startswith(f"Não encontrei o agendamento #{mine}")
    assert appointment(session, mine).status == "scheduled"


async def test_escalate_to_human_refuses_a_conversation_of_another_customer(
    deps: ToolDeps, client_context: ClientContext, neighbour: ClientContext, session: Session
) -> None:
    mixed = ClientContext(
        organization_id=neighbour.organization_id,
        contact_id=neighbour.contact_id,
        conversation_id=client_context.conversation_id,
    )
    request = AIMessage("", tool_calls=[{**call("escalate_to_human", reason="x"), "id": "c1"}])

    state = await bare_tool_graph(deps).ainvoke({"messages": [request]}, context=mixed)

    assert state["messages"][-1].content == "Conversa não encontrada."
    session.expire_all()
    conversation = session.get(Conversation, client_context.conversation_id)
    assert conversation is not None and conversation.status == "active"


# -- 3. two pet shops -----------------------------------------------------------------------


async def test_tools_of_another_pet_shop_never_see_the_first_ones_data(
    deps: ToolDeps,
    client_context: ClientContext,
    stranger: ClientContext,
    session: Session,
) -> None:
    mine = await book_rex(deps, client_context)

    services = await succeed(deps, stranger, "list_services")
    assert {s["name"]: s["price"] for s in services["services"]}[CONSULTA] == "R$ 150,00"
    assert await succeed(deps, stranger, "list_my_appointments") == {"appointments": []}
    free = await succeed(
        deps, stranger, "check_availability", date=TOMORROW, service_type="consulta"
    )
    assert "10:00" in free["slots"][CONSULTA]["manhã"]  # the first shop's Dra. Ana is busy then
    not_found = f"Não encontrei o agendamento #{mine} entre os agendamentos deste cliente."
    assert (await refuse(deps, stranger, "cancel_appointment", appointment_id=mine)).startswith(
        not_found
    )
    moved = await refuse(
        deps,
        stranger,
        "reschedule_appointment",
        appointment_id=mine,
        new_date=TOMORROW,
        new_time="15:00",
    )
    assert moved.startswith(not_found)
    pet = await refuse(
        deps,
        stranger,
        "book_appointment",
        pet_name="Rex",
        service_type="consulta",
        preferred_date=TOMORROW,
        preferred_time="11:00",
    )
    assert "não está cadastrado" in pet
    (only,) = appointments(session)
    assert (only.id, only.status, only.organization_id) == (
        mine,
        "scheduled",
        client_context.organization_id,
    )
    assert await succeed(deps, client_context, "list_my_appointments") != {"appointments": []}


async def test_tools_of_another_pet_shop_book_at_their_own_prices(
    deps: ToolDeps, client_context: ClientContext, stranger: ClientContext, session: Session
) -> None:
    await book_rex(deps, client_context)
    theirs = await book_rex(deps, stranger)  # same phone, same pet name, same time

    booked = appointment(session, theirs)
    assert (booked.organization_id, booked.contact_id, booked.price_cents) == (
        stranger.organization_id,
        stranger.contact_id,
        15000,
    )
    assert [p.organization_id for p in pets(session)] == [
        client_context.organization_id,
        stranger.organization_id,
    ]


async def test_register_pet_with_a_context_mixing_pet_shops_writes_nothing(
    deps: ToolDeps, client_context: ClientContext, stranger: ClientContext, session: Session
) -> None:
    mixed = ClientContext(
        organization_id=stranger.organization_id,
        contact_id=client_context.contact_id,
        conversation_id=client_context.conversation_id,
    )
    request = AIMessage(
        "", tool_calls=[{**call("register_pet", name="Rex", species="cão"), "id": "c1"}]
    )

    state = await bare_tool_graph(deps).ainvoke({"messages": [request]}, context=mixed)

    # The database's foreign keys refuse a contact of one shop writing into the other.
    assert str(state["messages"][-1].content).startswith(INTERNAL_ERROR)
    assert pets(session) == []


# -- 4. register_pet ------------------------------------------------------------------------


async def test_register_pet_creates_and_normalises_the_species(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    answer = await succeed(deps, client_context, "register_pet", name="  Rex ", species="Cão")

    (rex,) = pets(session)
    assert answer == {
        "status": "cadastrado",
        "pet_id": rex.id,
        "name": "Rex",
        "species": "cachorro",
        "breed": None,
        "age_years": None,
    }
    assert (rex.organization_id, rex.contact_id, rex.name, rex.species) == (
        client_context.organization_id,
        client_context.contact_id,
        "Rex",
        "cachorro",
    )


async def test_register_pet_is_idempotent_by_name_and_completes_the_record(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    first = await succeed(deps, client_context, "register_pet", name="Rex", species="cão")
    again = await succeed(
        deps, client_context, "register_pet", name="REX", species="cachorro", breed="Golden"
    )
    later = await succeed(
        deps, client_context, "register_pet", name="rex", species="cão", age_years=3
    )

    assert again["status"] == later["status"] == "já cadastrado (dados atualizados)"
    assert first["pet_id"] == again["pet_id"] == later["pet_id"]
    (rex,) = pets(session)
    assert (rex.name, rex.breed, rex.age_years) == ("Rex", "Golden", 3)


async def test_register_pet_matches_names_with_accented_capitals(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    await succeed(deps, client_context, "register_pet", name="Ônix", species="gata")
    again = await succeed(
        deps, client_context, "register_pet", name="ônix", species="gato", age_years=2
    )
    booked = await succeed(
        deps,
        client_context,
        "book_appointment",
        pet_name="ÔNIX",
        service_type="consulta",
        preferred_date=TOMORROW,
        preferred_time="10:00",
    )

    assert again["status"] == "já cadastrado (dados atualizados)"
    (onix,) = pets(session)
    assert (onix.name, onix.species, onix.age_years) == ("Ônix", "gato", 2)
    assert (
        booked["pet"] == "Ônix" and appointment(session, booked["appointment_id"]).pet_id == onix.id
    )


@pytest.mark.parametrize("age", [99, -1])
async def test_register_pet_refuses_an_impossible_age(
    deps: ToolDeps, client_context: ClientContext, session: Session, age: int
) -> None:
    await succeed(deps, client_context, "register_pet", name="Rex", species="cão", age_years=3)

    refusal = await refuse(
        deps, client_context, "register_pet", name="Rex", species="cão", age_years=age
    )
    new = await refuse(
        deps, client_context, "register_pet", name="Mel", species="gato", age_years=age
    )

    assert refusal == new == "Idade inválida: informe a idade em anos (0 a 40)."
    (rex,) = pets(session)
    assert rex.age_years == 3


async def test_register_pet_refuses_a_blank_name(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    assert await refuse(deps, client_context, "register_pet", name="  ", species="gato") == (
        "Informe o nome do pet."
    )
    assert pets(session) == []


# -- 5. check_availability ------------------------------------------------------------------


async def test_check_availability_groups_tomorrows_slots_by_period(
    deps: ToolDeps, client_context: ClientContext
) -> None:
    answer = await succeed(
        deps, client_context, "check_availability", date=TOMORROW, service_type="consulta"
    )

    assert answer == {
        "date": TOMORROW,
        "day": "quinta-feira, 26/11/2026",
        "slots": {CONSULTA: {"manhã": grid("08:00", "11:30"), "tarde": grid("13:00", "17:30")}},
    }


async def test_check_availability_fits_the_service_duration_before_closing(
    deps: ToolDeps, client_context: ClientContext
) -> None:
    answer = await succeed(
        deps, client_context, "check_availability", date=TOMORROW, service_type="tosa completa"
    )

    assert answer["slots"] == {
        "Tosa Completa": {"manhã": grid("08:00", "10:30"), "tarde": grid("13:00", "16:30")}
    }


async def test_check_availability_today_respects_the_lead_time(
    deps: ToolDeps, client_context: ClientContext
) -> None:
    answer = await succeed(
        deps, client_context, "check_availability", date="2026-11-25", service_type="consulta"
    )

    assert answer["slots"] == {CONSULTA: {"tarde": grid("15:00", "17:30")}}


async def test_check_availability_without_a_service_lists_every_service(
    deps: ToolDeps, client_context: ClientContext
) -> None:
    answer = await succeed(deps, client_context, "check_availability", date=TOMORROW)

    assert sorted(answer["slots"]) == sorted(
        [
            "Banho",
            "Tosa Completa",
            "Tosa Higiênica",
            CONSULTA,
            "Vacina V10",
            "Vacina Antirrábica",
        ]
    )
    assert answer["slots"]["Banho"]["tarde"][-1] == "17:00"


async def test_check_availability_on_a_sunday_says_closed_and_offers_next_days(
    deps: ToolDeps, client_context: ClientContext
) -> None:
    answer = await succeed(
        deps, client_context, "check_availability", date="2026-11-29", service_type="consulta"
    )

    assert answer["day"] == "domingo, 29/11/2026"
    assert answer["closed"] == "A loja não abre nesse dia."
    assert answer["slots"] == {CONSULTA: {}}
    assert list(answer["next_available"]) == [
        "2026-11-30 (segunda-feira, 30/11/2026)",
        "2026-12-01 (terça-feira, 01/12/2026)",
        "2026-12-02 (quarta-feira, 02/12/2026)",
    ]
    assert answer["next_available"]["2026-11-30 (segunda-feira, 30/11/2026)"] == {
        "manhã": grid("08:00", "11:30"),
        "tarde": grid("13:00", "17:30"),
    }


async def test_check_availability_on_a_closure_says_closed_and_offers_next_days(
    deps: ToolDeps, client_context: ClientContext
) -> None:
    answer = await succeed(
        deps, client_context, "check_availability", date="2026-12-25", service_type="consulta"
    )

    assert answer["closed"] == "A loja não abre nesse dia."
    assert answer["slots"] == {CONSULTA: {}}
    saturday, monday, _ = answer["next_available"]
    assert (saturday, monday) == (
        "2026-12-26 (sábado, 26/12/2026)",
        "2026-12-28 (segunda-feira, 28/12/2026)",
    )
    assert answer["next_available"][saturday] == {
        "manhã": grid("08:00", "11:30"),
        "tarde": ["12:00", "12:30"],
    }


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        ("2026-11-24", "A data 24/11/2026 já passou."),
        ("amanhã", "Data inválida 'amanhã': use o formato AAAA-MM-DD."),
        ("26/11", "Data inválida '26/11': use o formato AAAA-MM-DD."),
        ("2026-02-30", "Data inválida '2026-02-30': use o formato AAAA-MM-DD."),
    ],
)
async def test_check_availability_refuses_bad_dates_in_portuguese(
    deps: ToolDeps, client_context: ClientContext, day: str, expected: str
) -> None:
    assert (
        await refuse(deps, client_context, "check_availability", date=day, service_type="consulta")
        == expected
    )


async def test_check_availability_of_an_unknown_service_lists_the_catalogue(
    deps: ToolDeps, client_context: ClientContext
) -> None:
    refusal = await refuse(
        deps, client_context, "check_availability", date=TOMORROW, service_type="hotel"
    )

    assert refusal == (
        "Não oferecemos 'hotel'. Serviços disponíveis: Banho, Consulta Veterinária Geral, "
        "Tosa Completa, Tosa Higiênica, Vacina Antirrábica, Vacina V10."
    )


# -- 6. book_appointment --------------------------------------------------------------------


async def test_book_appointment_books_rex_tomorrow_at_ten(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    await succeed(deps, client_context, "register_pet", name="Rex", species="cachorro")

    answer = await succeed(
        deps,
        client_context,
        "book_appointment",
        pet_name="rex",
        service_type="consulta geral",
        preferred_date=TOMORROW,
        preferred_time="10:00",
    )

    (booked,) = appointments(session)
    (rex,) = pets(session)
    assert answer == {
        "outcome": "agendado",
        "appointment_id": booked.id,
        "date": TOMORROW,
        "day": "quinta-feira, 26/11/2026",
        "time": "10:00",
        "status": "scheduled",
        "price": "R$ 120,00",
        "service": CONSULTA,
        "pet": "Rex",
        "with": "Dra. Ana",
        "duration_minutes": 30,
    }
    assert booked.starts_at == local(TOMORROW, "10:00")
    assert booked.ends_at == local(TOMORROW, "10:30")
    assert (booked.contact_id, booked.pet_id, booked.price_cents, booked.source) == (
        client_context.contact_id,
        rex.id,
        12000,
        "client_ai",
    )


async def test_book_appointment_twice_keeps_one_appointment(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    first = await book_rex(deps, client_context)
    second = await book_rex(deps, client_context)

    assert first == second
    assert [a.id for a in appointments(session)] == [first]


async def test_book_appointment_off_the_grid_offers_the_nearest_times(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    await succeed(deps, client_context, "register_pet", name="Rex", species="cachorro")

    refusal = await refuse(
        deps,
        client_context,
        "book_appointment",
        pet_name="Rex",
        service_type="consulta",
        preferred_date=TOMORROW,
        preferred_time="12:15",
    )

    assert refusal.endswith(
        "Horários livres mais próximos: quinta-feira, 26/11/2026 às 11:00; "
        "quinta-feira, 26/11/2026 às 11:30; quinta-feira, 26/11/2026 às 13:00."
    )
    assert appointments(session) == []


async def test_book_appointment_on_a_taken_time_offers_the_nearest_times(
    deps: ToolDeps, client_context: ClientContext, neighbour: ClientContext, session: Session
) -> None:
    theirs = await book_rex(deps, neighbour)

    await succeed(deps, client_context, "register_pet", name="Mel", species="gata")
    refusal = await refuse(
        deps,
        client_context,
        "book_appointment",
        pet_name="Mel",
        service_type="consulta",
        preferred_date=TOMORROW,
        preferred_time="10:00",
    )

    assert refusal.startswith("Esse horário")
    assert refusal.endswith(
        "Horários livres mais próximos: quinta-feira, 26/11/2026 às 09:00; "
        "quinta-feira, 26/11/2026 às 09:30; quinta-feira, 26/11/2026 às 10:30."
    )
    assert [a.id for a in appointments(session)] == [theirs]


@pytest.mark.parametrize("day", ["2026-11-24", "2000-01-01"])
async def test_book_appointment_refuses_a_past_date(
    deps: ToolDeps, client_context: ClientContext, session: Session, day: str
) -> None:
    await succeed(deps, client_context, "register_pet", name="Rex", species="cachorro")

    refusal = await refuse(
        deps,
        client_context,
        "book_appointment",
        pet_name="Rex",
        service_type="consulta",
        preferred_date=day,
        preferred_time="10:00",
    )

    assert refusal == f"A data {datetime.fromisoformat(day):%d/%m/%Y} já passou."
    assert appointments(session) == []


async def test_book_appointment_of_an_ambiguous_service_asks_which(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    await succeed(deps, client_context, "register_pet", name="Rex", species="cachorro")

    refusal = await refuse(
        deps,
        client_context,
        "book_appointment",
        pet_name="Rex",
        service_type="tosa",
        preferred_date=TOMORROW,
        preferred_time="10:00",
    )

    assert refusal == (
        "'tosa' pode ser: Tosa Completa, Tosa Higiênica. Pergunte ao cliente qual deles."
    )
    assert appointments(session) == []


async def test_book_appointment_of_an_unregistered_pet_asks_to_register_it(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    refusal = await refuse(
        deps,
        client_context,
        "book_appointment",
        pet_name="Thor",
        service_type="consulta",
        preferred_date=TOMORROW,
        preferred_time="10:00",
    )

    assert refusal == (
        "O pet 'Thor' não está cadastrado para este cliente. "
        "Pergunte os dados e use register_pet antes de agendar."
    )
    assert appointments(session) == []


# -- 7. list, reschedule, cancel ------------------------------------------------------------


async def test_list_my_appointments_shows_only_upcoming_own_appointments(
    deps: ToolDeps,
    client_context: ClientContext,
    neighbour: ClientContext,
    session: Session,
) -> None:
    consulta = await book_rex(deps, client_context)
    banho = (
        await succeed(
            deps,
            client_context,
            "book_appointment",
            pet_name="Rex",
            service_type="banho",
            preferred_date="2026-11-27",
            preferred_time="09:00",
        )
    )["appointment_id"]
    insert_appointment(session, client_context, CONSULTA, "Dra. Ana", local("2026-11-25", "13:30"))
    insert_appointment(
        session,
        client_context,
        CONSULTA,
        "Dra. Ana",
        local("2026-11-20", "10:00"),
        status="completed",
    )
    insert_appointment(
        session, client_context, "Banho", "Carla", local("2026-11-30", "10:00"), status="cancelled"
    )
    await book_rex(deps, neighbour, time="11:00")

    listed = await succeed(deps, client_context, "list_my_appointments")

    assert listed["appointments"] == [
        {
            "appointment_id": consulta,
            "date": TOMORROW,
            "day": "quinta-feira, 26/11/2026",
            "time": "10:00",
            "status": "scheduled",
            "price": "R$ 120,00",
            "service": CONSULTA,
            "pet": "Rex",
            "with": "Dra. Ana",
        },
        {
            "appointment_id": banho,
            "date": "2026-11-27",
            "day": "sexta-feira, 27/11/2026",
            "time": "09:00",
            "status": "scheduled",
            "price": "R$ 50,00",
            "service": "Banho",
            "pet": "Rex",
            "with": "Carla",
        },
    ]


async def test_reschedule_appointment_moves_the_same_appointment(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    booked = await book_rex(deps, client_context)

    answer = await succeed(
        deps,
        client_context,
        "reschedule_appointment",
        appointment_id=booked,
        new_date="2026-11-27",
        new_time="14:00",
    )

    assert (answer["outcome"], answer["appointment_id"]) == ("remarcado", booked)
    assert (answer["date"], answer["time"]) == ("2026-11-27", "14:00")
    (moved,) = appointments(session)
    assert (moved.id, moved.status) == (booked, "scheduled")
    assert (moved.starts_at, moved.ends_at) == (
        local("2026-11-27", "14:00"),
        local("2026-11-27", "14:30"),
    )


async def test_reschedule_appointment_onto_a_taken_time_changes_nothing(
    deps: ToolDeps, client_context: ClientContext, neighbour: ClientContext, session: Session
) -> None:
    booked = await book_rex(deps, client_context)
    await book_rex(deps, neighbour, time="11:00")

    refusal = await refuse(
        deps,
        client_context,
        "reschedule_appointment",
        appointment_id=booked,
        new_date=TOMORROW,
        new_time="11:00",
    )

    assert refusal.startswith("Esse horário")
    assert "Horários livres mais próximos: " in refusal
    assert "quinta-feira, 26/11/2026 às 10:00" in refusal  # its own time is free for it
    kept = appointment(session, booked)
    assert (kept.status, kept.starts_at) == ("scheduled", local(TOMORROW, "10:00"))


async def test_reschedule_appointment_to_a_past_date_changes_nothing(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    booked = await book_rex(deps, client_context)

    refusal = await refuse(
        deps,
        client_context,
        "reschedule_appointment",
        appointment_id=booked,
        new_date="2026-11-20",
        new_time="10:00",
    )

    assert refusal == "A data 20/11/2026 já passou."
    assert appointment(session, booked).starts_at == local(TOMORROW, "10:00")


async def test_cancel_appointment_cancels_and_frees_the_time(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    booked = await book_rex(deps, client_context)
    before = await succeed(
        deps, client_context, "check_availability", date=TOMORROW, service_type="consulta"
    )

    answer = await succeed(deps, client_context, "cancel_appointment", appointment_id=booked)

    assert (answer["outcome"], answer["appointment_id"], answer["status"]) == (
        "cancelado",
        booked,
        "cancelled",
    )
    cancelled = appointment(session, booked)
    assert (cancelled.status, cancelled.cancelled_at) == ("cancelled", NOW)
    after = await succeed(
        deps, client_context, "check_availability", date=TOMORROW, service_type="consulta"
    )
    assert "10:00" not in before["slots"][CONSULTA]["manhã"]
    assert after["slots"][CONSULTA]["manhã"] == grid("08:00", "11:30")
    assert await succeed(deps, client_context, "list_my_appointments") == {"appointments": []}


async def test_cancel_appointment_twice_says_it_is_no_longer_active(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    booked = await book_rex(deps, client_context)
    await succeed(deps, client_context, "cancel_appointment", appointment_id=booked)
    first = appointment(session, booked).cancelled_at

    again = await refuse(deps, client_context, "cancel_appointment", appointment_id=booked)
    moved = await refuse(
        deps,
        client_context,
        "reschedule_appointment",
        appointment_id=booked,
        new_date=TOMORROW,
        new_time="11:00",
    )

    assert again == moved == f"O agendamento #{booked} não está mais ativo."
    kept = appointment(session, booked)
    assert (kept.status, kept.cancelled_at, kept.starts_at) == (
        "cancelled",
        first,
        local(TOMORROW, "10:00"),
    )


async def test_cancel_appointment_that_already_started_is_no_longer_active(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    started = insert_appointment(
        session, client_context, CONSULTA, "Dra. Ana", local("2026-11-25", "13:30")
    )

    refusal = await refuse(deps, client_context, "cancel_appointment", appointment_id=started)

    assert refusal == f"O agendamento #{started} não está mais ativo."
    assert appointment(session, started).status == "scheduled"


# -- 8. escalate_to_human -------------------------------------------------------------------


async def test_escalate_to_human_hands_the_conversation_to_the_team(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    model = ScriptedChatModel(
        script=[
            AIMessage(
                "", tool_calls=[call("escalate_to_human", reason="  gato sem comer há 3 dias ")]
            ),
            AIMessage("ok"),
        ]
    )

    result = await run_turn(build_graph(model, deps), client_context, [HumanMessage("socorro")])

    assert result.escalated and result.reply == "ok"
    (message,) = [m for m in result.messages if isinstance(m, ToolMessage)]
    assert message.status == "success"
    assert json.loads(str(message.content))["status"] == "encaminhado para a equipe"
    session.expire_all()
    conversation = session.get(Conversation, client_context.conversation_id)
    assert conversation is not None
    assert (conversation.status, conversation.escalation_reason, conversation.escalated_at) == (
        "escalated",
        "gato sem comer há 3 dias",
        NOW,
    )


async def test_escalate_to_human_without_a_reason_still_escalates(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    await invoke(deps, client_context, "escalate_to_human", reason="   ")

    session.expire_all()
    conversation = session.get(Conversation, client_context.conversation_id)
    assert conversation is not None
    assert (conversation.status, conversation.escalation_reason) == (
        "escalated",
        "sem motivo informado",
    )


# -- 9. list_services -----------------------------------------------------------------------


async def test_list_services_shows_the_catalogue_with_prices(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    answer = await succeed(deps, client_context, "list_services")

    assert answer["services"] == [
        {"name": "Banho", "category": "banho", "duration_minutes": 60, "price": "R$ 50,00"},
        {"name": CONSULTA, "category": "consulta", "duration_minutes": 30, "price": "R$ 120,00"},
        {"name": "Tosa Completa", "category": "tosa", "duration_minutes": 90, "price": "R$ 90,00"},
        {"name": "Tosa Higiênica", "category": "tosa", "duration_minutes": 45, "price": "R$ 45,00"},
        {
            "name": "Vacina Antirrábica",
            "category": "vacina",
            "duration_minutes": 15,
            "price": "R$ 70,00",
        },
        {"name": "Vacina V10", "category": "vacina", "duration_minutes": 15, "price": "R$ 95,00"},
    ]


async def test_list_services_leaves_out_inactive_services(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    banho = session.exec(select(Service).where(Service.name == "Banho")).one()
    banho.is_active = False
    session.commit()

    answer = await succeed(deps, client_context, "list_services")
    refusal = await refuse(
        deps, client_context, "check_availability", date=TOMORROW, service_type="banho"
    )

    assert "Banho" not in [s["name"] for s in answer["services"]]
    assert refusal.startswith("Não oferecemos 'banho'.")


# -- 10. failures ---------------------------------------------------------------------------


async def test_tool_internal_error_reads_as_a_generic_apology_and_the_turn_ends(
    deps: ToolDeps,
    client_context: ClientContext,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await succeed(deps, client_context, "register_pet", name="Rex", species="cachorro")

    async def broken(*_: object, **__: object) -> booking.OrgPolicy:
        raise RuntimeError("connection to server lost; password=hunter2")

    monkeypatch.setattr(booking, "load_policy", broken)
    checked = await invoke(deps, client_context, "check_availability", date=TOMORROW)
    booked = await invoke(
        deps,
        client_context,
        "book_appointment",
        pet_name="Rex",
        service_type="consulta",
        preferred_date=TOMORROW,
        preferred_time="10:00",
    )

    assert checked.status == booked.status == "error"
    assert checked.content == booked.content
    assert str(booked.content).startswith(INTERNAL_ERROR)
    assert "hunter2" not in str(booked.content)
    assert appointments(session) == []


async def test_tool_with_invalid_arguments_reads_as_text_and_the_turn_ends(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    wrong = await invoke(
        deps, client_context, "register_pet", name="Rex", species="cão", age_years="três"
    )
    missing = await invoke(deps, client_context, "book_appointment", pet_name="Rex")

    assert wrong.status == missing.status == "error"
    assert str(wrong.content).startswith("Argumentos inválidos para a ferramenta:")
    assert str(missing.content).startswith("Argumentos inválidos para a ferramenta:")
    assert pets(session) == [] and appointments(session) == []
