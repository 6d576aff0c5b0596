"""Bare answers recognised without a model, and the customer's opt-out."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from sqlmodel import Session

from zapvet.graphs.client.graph import OPTED_IN, OPTED_OUT, build_graph
from zapvet.graphs.replies import confirmation, subscription
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import Contact
from zapvet.tools.context import ClientContext
from zapvet.tools.deps import ToolDeps


@pytest.mark.parametrize("text", ["sim", "Sim!", "SIM, pode", "confirmo", "ok", "👍", "pode sim"])
def test_confirmation_yes(text: str) -> None:
    assert confirmation(text) == "yes"


@pytest.mark.parametrize("text", ["não", "Não, deixa", "nao obrigado", "cancela", "esquece"])
def test_confirmation_no(text: str) -> None:
    assert confirmation(text) == "no"


@pytest.mark.parametrize(
    "text",
    [
        "sim, mas muda para as 11h",
        "não, muda pra 11h",
        "qual o preço?",
        "simone",
        "ok mas e amanhã?",
    ],
)
def test_confirmation_ignores_new_requests(text: str) -> None:
    assert confirmation(text) is None


@pytest.mark.parametrize(
    "text",
    ["parar", "PARE", "Sair", "stop", "Não quero mais receber mensagens",
     "nao quero receber mensagens", "parar de receber lembretes", "não me mande mais mensagens"],
)  # fmt: skip
def test_subscription_opt_out(text: str) -> None:
    assert subscription(text) == "opt_out"


@pytest.mark.parametrize(
    "text", ["voltar a receber", "Quero receber", "voltar a receber mensagens"]
)
def test_subscription_opt_in(text: str) -> None:
    assert subscription(text) == "opt_in"


@pytest.mark.parametrize(
    "text",
    ["quero sair com meu cachorro", "para amanhã às 10", "parar de latir", "sair cedo hoje?"],
)
def test_subscription_ignores_sentences(text: str) -> None:
    assert subscription(text) is None


@pytest.mark.anyio
async def test_opt_out_and_back_without_the_model(
    deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    model = ScriptedChatModel(script=[])
    graph = build_graph(model, deps)
    history = [HumanMessage("Não quero mais receber mensagens")]
    assert (await run_turn(graph, client_context, history)).reply == OPTED_OUT
    contact = session.get(Contact, client_context.contact_id)
    assert contact is not None
    session.refresh(contact)
    assert contact.opted_out_at is not None

    back = [*history, AIMessage(OPTED_OUT), HumanMessage("voltar a receber")]
    assert (await run_turn(graph, client_context, back)).reply == OPTED_IN
    session.refresh(contact)
    assert contact.opted_out_at is None
    assert model.calls == []
