"""The production ChatOpenAI client drives the client graph over HTTP, in OpenAI's wire format."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from sqlmodel import Session, select

from tests.conftest import NOW
from zapvet.config import load_settings
from zapvet.graphs.client.graph import FALLBACK_REPLY, build_graph
from zapvet.graphs.turn import run_turn
from zapvet.llm.openai import MAX_RETRIES, REQUEST_TIMEOUT_S, build_chat_model
from zapvet.models import AIInteraction, Appointment
from zapvet.testing.openai_server import FakeOpenAIServer, Reply, ToolCall
from zapvet.tools.context import ClientContext
from zapvet.tools.deps import ToolDeps

pytestmark = pytest.mark.anyio


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def _model(server: FakeOpenAIServer) -> ChatOpenAI:
    settings = load_settings(openai_api_key="test-key", openai_base_url=server.base_url)
    model = build_chat_model(settings)
    assert isinstance(model, ChatOpenAI)
    return model


def test_chat_model_always_has_a_timeout_and_retries(server: FakeOpenAIServer) -> None:
    model = _model(server)
    assert model.request_timeout == REQUEST_TIMEOUT_S
    assert model.max_retries == MAX_RETRIES


async def test_graph_books_over_the_wire(
    server: FakeOpenAIServer, deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    server.enqueue(
        Reply(tool_calls=[ToolCall("register_pet", {"name": "Rex", "species": "cachorro"})]),
        Reply(
            tool_calls=[
                ToolCall(
                    "book_appointment",
                    {
                        "pet_name": "Rex",
                        "service_type": "consulta",
                        "preferred_date": "2026-11-26",
                        "preferred_time": "10:00",
                    },
                )
            ]
        ),
        Reply(text="Agendado: amanhã às 10:00, R$ 120,00.", prompt_tokens=900, cached_tokens=700),
    )
    result = await run_turn(
        build_graph(_model(server), deps),
        client_context,
        [HumanMessage("Consulta pro Rex amanhã 10h")],
    )

    assert result.reply == "Agendado: amanhã às 10:00, R$ 120,00." and result.ungrounded == []
    first, second, third = (r.body for r in server.requests)
    assert first["model"] == "gpt-4o-mini" and first["temperature"] == 0.3
    assert first["parallel_tool_calls"] is False
    assert len(first["tools"]) == 8
    assert first["messages"][0]["role"] == "system"
    assert "Você é a atendente virtual de Pet Feliz" in first["messages"][0]["content"]
    # The tool result goes back as a tool message answering the call's id.
    call_id = second["messages"][-2]["tool_calls"][0]["id"]
    assert second["messages"][-1] == {
        "role": "tool",
        "content": second["messages"][-1]["content"],
        "tool_call_id": call_id,
    }
    assert '"status": "cadastrado"' in second["messages"][-1]["content"]
    assert third["messages"][-1]["role"] == "tool"
    assert session.exec(select(Appointment)).one().price_cents == 12000
    interaction = session.exec(select(AIInteraction)).one()
    assert interaction.model == "gpt-4o-mini" and interaction.status == "success"
    assert interaction.cached_input_tokens == 700
    assert interaction.input_tokens >= 900


async def test_a_server_error_becomes_the_fallback(
    server: FakeOpenAIServer, deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    server.enqueue(*(Reply(status=500, text="upstream down", retry_after=0.01) for _ in range(3)))
    result = await run_turn(build_graph(_model(server), deps), client_context, [HumanMessage("Oi")])
    assert result.reply == FALLBACK_REPLY
    assert len(server.requests) == 1 + MAX_RETRIES
    interaction = session.exec(select(AIInteraction)).one()
    assert interaction.status == "error"
    assert interaction.error_message is not None
    assert "Error code: 500" in interaction.error_message


async def test_a_malformed_tool_call_becomes_the_fallback(
    server: FakeOpenAIServer, deps: ToolDeps, client_context: ClientContext, session: Session
) -> None:
    server.enqueue(Reply(tool_calls=[ToolCall("book_appointment", "{not json")]))
    result = await run_turn(build_graph(_model(server), deps), client_context, [HumanMessage("Oi")])
    assert result.reply == FALLBACK_REPLY
    interaction = session.exec(select(AIInteraction)).one()
    assert interaction.error_message == "malformed tool call from the model: book_appointment"
    assert NOW.year == 2026
