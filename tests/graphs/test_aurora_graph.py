"""Aurora: owner-only, figures from tools, writes only after a "sim" from the owner."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from sqlmodel import Session, select

from tests.conftest import second_shop
from zapvet.graphs.aurora.graph import NOT_AN_OWNER, build_graph
from zapvet.graphs.client.graph import build_graph as build_client_graph
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import (
    Appointment,
    AuditLog,
    AuroraOwnerNumber,
    AuroraPendingAction,
    Contact,
    Organization,
    Pet,
)
from zapvet.tools.context import AuroraContext, ClientContext
from zapvet.tools.deps import ToolDeps

pytestmark = pytest.mark.anyio
AURORA_ONLY = {
    "business_summary", "ai_costs", "care_report", "list_appointments", "free_slots",
    "top_services", "new_clients",
    "inactive_clients", "find_client", "create_appointment", "mark_appointment",
    "update_contact", "hand_back_conversation", "send_message",
}  # fmt: skip


def call(tool: str, **args: object) -> dict[str, object]:
    return {"name": tool, "args": args, "id": None, "type": "tool_call"}


@pytest.fixture
def marina(session: Session, petfeliz: Organization) -> Contact:
    assert petfeliz.id
    contact = Contact(organization_id=petfeliz.id, phone="5511977776666", name="Marina")
    session.add(contact)
    session.flush()
    session.add(
        Pet(organization_id=petfeliz.id, contact_id=contact.id or 0, name="Rex", species="cachorro")
    )
    session.commit()
    return contact


def booking_script() -> list[AIMessage]:
    args = {"client": "Marina", "pet_name": "Rex", "service_type": "banho",
            "date": "2026-11-26", "time": "10:00"}  # fmt: skip
    return [AIMessage("", tool_calls=[call("create_appointment", **args)]), AIMessage("Confirma?")]


async def test_aurora_refuses_an_inactive_owner_number(
    deps: ToolDeps, owner: AuroraContext, session: Session
) -> None:
    number = session.get(AuroraOwnerNumber, owner.owner_number_id)
    assert number is not None
    number.is_active = False
    session.commit()
    model = ScriptedChatModel(script=[AIMessage("não deveria responder")])
    result = await run_turn(build_graph(model, deps), owner, [HumanMessage("Quanto faturei hoje?")])
    assert result.reply == NOT_AN_OWNER and model.calls == []


async def test_aurora_refuses_an_owner_number_of_another_organization(
    deps: ToolDeps, owner: AuroraContext, session: Session
) -> None:
    other_org = second_shop(session).id
    assert other_org is not None
    forged = AuroraContext(
        organization_id=other_org,
        owner_number_id=owner.owner_number_id,  # petfeliz's owner claiming the other shop
        contact_id=owner.contact_id,
        conversation_id=owner.conversation_id,
    )
    model = ScriptedChatModel(script=[AIMessage("não deveria responder")])
    result = await run_turn(build_graph(model, deps), forged, [HumanMessage("Faturamento?")])
    assert result.reply == NOT_AN_OWNER and model.calls == []


async def test_the_client_graph_has_none_of_auroras_tools(
    deps: ToolDeps, client_context: object
) -> None:
    model = ScriptedChatModel(script=[AIMessage("Oi!")])
    await run_turn(build_client_graph(model, deps), client_context, [HumanMessage("sou o dono")])
    offered = {t["function"]["name"] for t in model.calls[0]["tools"]}
    assert not offered & AURORA_ONLY


async def test_a_command_runs_only_after_the_owners_yes(
    deps: ToolDeps, owner: AuroraContext, marina: Contact, session: Session
) -> None:
    model = ScriptedChatModel(script=booking_script())
    graph = build_graph(model, deps)
    history = [HumanMessage("Agenda banho pro Rex da Marina amanhã 10h")]
    first = await run_turn(graph, owner, history)
    assert first.reply == "Confirma?"
    assert session.exec(select(Appointment)).all() == []  # proposed, not done
    (proposal,) = session.exec(select(AuroraPendingAction)).all()
    assert proposal.status == "pending" and "Banho para Rex (Marina)" in proposal.preview

    second = await run_turn(graph, owner, [*history, AIMessage("Confirma?"), HumanMessage("Sim!")])
    assert second.reply is not None and second.reply.startswith("Feito: agendamento #")
    assert len(model.calls) == 2  # the "sim" never reached the model
    booked = session.exec(select(Appointment)).one()
    assert (booked.source, booked.price_cents) == ("aurora", 5000)
    audit = session.exec(select(AuditLog)).one()
    assert (audit.action, audit.actor_kind, audit.actor_id) == (
        "create_appointment",
        "owner",
        owner.owner_number_id,
    )
    assert audit.before is None and audit.after is not None and audit.after["id"] == booked.id


@pytest.mark.parametrize(("registered", "said"), [("Ônix", "Onix"), ("Onix", "ônix")])
async def test_owner_and_customer_name_a_pet_by_the_same_rule(
    deps: ToolDeps,
    owner: AuroraContext,
    client_context: ClientContext,
    session: Session,
    registered: str,
    said: str,
) -> None:
    """ "Onix" and "Ônix" are one pet for the customer's tools and for Aurora's."""

    async def customer(tool: str, **args: object) -> str:
        model = ScriptedChatModel(
            script=[AIMessage("", tool_calls=[call(tool, **args)]), AIMessage("ok")]
        )
        turn = await run_turn(build_client_graph(model, deps), client_context, [HumanMessage("Oi")])
        (answer,) = [m for m in turn.messages if m.type == "tool"]
        assert getattr(answer, "status", "success") == "success", answer.content
        return str(answer.content)

    await customer("register_pet", name=registered, species="gato")
    again = await customer("register_pet", name=said, species="gato", age_years=2)
    slot = {"service_type": "banho", "preferred_date": "2026-11-26", "preferred_time": "11:00"}
    await customer("book_appointment", pet_name=said, **slot)
    args = {"client": f"#{client_context.contact_id}", "pet_name": said, "service_type": "banho",
            "date": "2026-11-26", "time": "10:00"}  # fmt: skip
    model = ScriptedChatModel(
        script=[AIMessage("", tool_calls=[call("create_appointment", **args)]), AIMessage("Ok?")]
    )
    await run_turn(build_graph(model, deps), owner, [HumanMessage("Agenda banho amanhã 10h")])

    assert "já cadastrado" in again
    (pet,) = session.exec(select(Pet).where(Pet.contact_id == client_context.contact_id)).all()
    assert (pet.name, pet.age_years) == (registered, 2)
    assert [a.pet_id for a in session.exec(select(Appointment)).all()] == [pet.id]
    (proposal,) = session.exec(select(AuroraPendingAction)).all()
    assert proposal.payload["pet_id"] == pet.id


async def test_two_simultaneous_yeses_execute_once(
    deps: ToolDeps, owner: AuroraContext, marina: Contact, session: Session
) -> None:
    model = ScriptedChatModel(
        script=booking_script(), responder=lambda _: AIMessage("Não há nada pendente.")
    )
    graph = build_graph(model, deps)
    history = [HumanMessage("Agenda banho pro Rex da Marina amanhã 10h")]
    await run_turn(graph, owner, history)
    yes = [*history, AIMessage("Confirma?"), HumanMessage("sim")]
    results = await asyncio.gather(run_turn(graph, owner, yes), run_turn(graph, owner, yes))
    replies = sorted(r.reply or "" for r in results)
    assert replies[0].startswith("Feito") and replies[1] == "Não há nada pendente."
    assert len(session.exec(select(Appointment)).all()) == 1
    assert len(session.exec(select(AuditLog)).all()) == 1


async def test_aurora_tools_never_reach_another_organization(
    deps: ToolDeps, owner: AuroraContext, session: Session
) -> None:
    other = second_shop(session).id
    assert other is not None
    stranger = Contact(organization_id=other, phone="5511933332222", name="Estranha")
    session.add(stranger)
    session.commit()
    model = ScriptedChatModel(
        script=[
            AIMessage("", tool_calls=[call("find_client", query="Estranha")]),
            AIMessage("", tool_calls=[call("send_message", client=f"#{stranger.id}", text="oi")]),
            AIMessage("Não encontrei."),
        ]
    )
    result = await run_turn(build_graph(model, deps), owner, [HumanMessage("Procura a Estranha")])
    tool_texts = [str(m.content) for m in result.messages if m.type == "tool"]
    assert tool_texts[0] == '{"clients": []}'
    assert "Nenhum cliente encontrado" in tool_texts[1]
    assert session.exec(select(AuroraPendingAction)).all() == []
