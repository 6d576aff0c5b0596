"""The client attendant graph, driven by a scripted model against the real database."""

from __future__ import annotations

from datetime import datetime

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from sqlmodel import Session, select

from tests.conftest import SAO_PAULO
from zapvet.graphs.client.graph import (
    FALLBACK_REPLY,
    LAST_STEP_REPLY,
    RECURSION_LIMIT,
    build_graph,
)
from zapvet.graphs.loop import STEP_LIMIT_ERROR
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import AIInteraction, Appointment, Conversation, Pet
from zapvet.tools.context import ClientContext
from zapvet.tools.deps import ToolDeps

pytestmark = pytest.mark.anyio


def call(tool: str, **args: object) -> dict[str, object]:
    return {"name": tool, "args": args, "id": None, "type": "tool_call"}


async def test_client_graph_books_the_seed_rex_consultation(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    model = ScriptedChatModel(
        script=[
            AIMessage(
                "",
                tool_calls=[
                    call("register_pet", name="Rex", species="cachorro", breed="Golden Retriever",
                         age_years=3),
                    call("book_appointment", pet_name="Rex", service_type="consulta geral",
                         preferred_date="2026-11-26", preferred_time="10:00"),
                ],
            ),
            AIMessage(
                "Maravilha! ✅ Agendamento confirmado: amanhã, 26/11, às 10:00, Consulta "
                "Veterinária Geral para o Rex. Valor: R$ 120,00."
            ),
        ]
    )  # fmt: skip
    graph = build_graph(model, deps)
    history = [
        HumanMessage("Olá! Quero agendar uma consulta para meu cachorro Rex."),
        AIMessage("Claro! Que dia e horário?"),
        HumanMessage("Amanhã às 10h. Ele é um Golden Retriever de 3 anos."),
    ]

    result = await run_turn(graph, client_context, history)

    assert result.error is None and result.ungrounded == []
    assert result.reply is not None and "R$ 120,00" in result.reply
    tool_results = [m for m in result.messages if isinstance(m, ToolMessage)]
    assert [m.name for m in tool_results] == ["register_pet", "book_appointment"]
    assert all(m.status != "error" for m in tool_results), [m.content for m in tool_results]
    rex = session.exec(select(Pet)).one()
    assert (rex.name, rex.species, rex.breed, rex.age_years) == (
        "Rex",
        "cachorro",
        "Golden Retriever",
        3,
    )
    booked = session.exec(select(Appointment)).one()
    assert booked.starts_at.astimezone(SAO_PAULO) == datetime(2026, 11, 26, 10, 0, tzinfo=SAO_PAULO)
    assert (booked.price_cents, booked.pet_id, booked.status) == (12000, rex.id, "scheduled")
    interaction = session.exec(select(AIInteraction)).one()
    assert (interaction.status, interaction.ai_type, interaction.model) == (
        "success",
        "client",
        "scripted",
    )
    assert interaction.input_tokens > 0 and interaction.output_tokens > 0
    assert interaction.tool_calls == 2 and interaction.ungrounded_facts == 0


async def test_client_graph_prompt_puts_the_stable_part_first(
    deps: ToolDeps, client_context: ClientContext
) -> None:
    model = ScriptedChatModel(script=[AIMessage("Oi!"), AIMessage("Oi de novo!")])
    graph = build_graph(model, deps)
    first = [HumanMessage("Oi")]
    await run_turn(graph, client_context, first)
    await run_turn(graph, client_context, [*first, AIMessage("Oi!"), HumanMessage("Tudo bem?")])

    one, two = (c["messages"] for c in model.calls)
    assert one[0].content == two[0].content  # byte-identical static system prompt
    assert "Consulta Veterinária Geral (categoria consulta): 30 min, R$ 120,00" in one[0].content
    assert "Agora: quarta-feira, 25/11/2026, 14:00" in one[1].content  # per-turn context
    # The second turn: static prompt, earlier history, context, then the new message.
    assert [type(m).__name__ for m in two] == [
        "SystemMessage", "HumanMessage", "AIMessage", "SystemMessage", "HumanMessage",
    ]  # fmt: skip
    tools = {t["function"]["name"] for t in model.calls[0]["tools"]}
    assert tools == {
        "register_pet", "check_availability", "book_appointment", "escalate_to_human",
        "list_services", "list_my_appointments", "cancel_appointment", "reschedule_appointment",
    }  # fmt: skip


async def test_client_graph_model_error_gives_the_fallback_and_an_error_row(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    model = ScriptedChatModel(script=[TimeoutError("model timed out after 30 s")])
    result = await run_turn(build_graph(model, deps), client_context, [HumanMessage("Oi")])
    assert result.reply == FALLBACK_REPLY
    interaction = session.exec(select(AIInteraction)).one()
    assert interaction.status == "error"
    assert interaction.error_message == "TimeoutError: model timed out after 30 s"


async def test_client_graph_escalation_silences_later_turns(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    model = ScriptedChatModel(
        script=[
            AIMessage("", tool_calls=[call("escalate_to_human", reason="vômito com sangue")]),
            AIMessage("Procure um veterinário agora. Uma pessoa da equipe vai falar com você."),
        ]
    )
    graph = build_graph(model, deps)
    history = [HumanMessage("meu cachorro está vomitando sangue")]
    result = await run_turn(graph, client_context, history)
    assert result.escalated and result.reply and "equipe" in result.reply
    conversation = session.get(Conversation, client_context.conversation_id)
    assert conversation is not None
    session.refresh(conversation)
    assert (conversation.status, conversation.escalation_reason) == (
        "escalated",
        "vômito com sangue",
    )

    later = await run_turn(
        graph, client_context, [*history, AIMessage(result.reply), HumanMessage("?")]
    )
    assert later.reply is None
    assert model.remaining == 0 and len(model.calls) == 2  # the model was not called again


async def test_client_graph_ends_gracefully_when_the_model_never_stops_calling_tools(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    model = ScriptedChatModel(responder=lambda _: AIMessage("", tool_calls=[call("list_services")]))
    result = await run_turn(build_graph(model, deps), client_context, [HumanMessage("Oi")])
    assert result.reply == LAST_STEP_REPLY and result.handoff  # the drain escalates it
    assert 3 <= len(model.calls) <= RECURSION_LIMIT // 2
    row = session.exec(select(AIInteraction)).one()
    assert (row.status, row.error_message) == ("error", STEP_LIMIT_ERROR)


async def test_client_graph_invoked_directly_as_studio_does_keeps_its_step_limit(
    deps: ToolDeps, client_context: ClientContext
) -> None:
    model = ScriptedChatModel(responder=lambda _: AIMessage("", tool_calls=[call("list_services")]))
    graph = build_graph(model, deps)
    assert graph.config is not None and graph.config["recursion_limit"] == RECURSION_LIMIT
    state = await graph.ainvoke({"messages": [HumanMessage("Oi")]}, context=client_context)
    assert state["reply"] == LAST_STEP_REPLY
    assert 3 <= len(model.calls) <= RECURSION_LIMIT // 2


async def test_client_graph_counts_ungrounded_facts(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    model = ScriptedChatModel(script=[AIMessage("O banho custa R$ 55,00 e tenho vaga às 10:30.")])
    result = await run_turn(build_graph(model, deps), client_context, [HumanMessage("banho?")])
    assert result.ungrounded == ["R$ 55,00", "às 10:30"]
    assert session.exec(select(AIInteraction)).one().ungrounded_facts == 2
