"""The fake OpenAI server, driven by the real ChatOpenAI client over loopback."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from zapvet.testing.openai_server import FakeOpenAIServer, Reply, ToolCall


@tool
def book_bath(pet_name: str, day: str) -> str:
    """Agenda um banho para o pet. Exemplo: pet_name="Rex", day="2025-03-14"."""
    return f"Banho do {pet_name} agendado para {day}."


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as running:
        yield running


def chat_model(server: FakeOpenAIServer, **options: Any) -> ChatOpenAI:
    settings: dict[str, Any] = {"timeout": 10, "max_retries": 0, **options}
    return ChatOpenAI(model="gpt-4o-mini", base_url=server.base_url, api_key="test-key", **settings)


@asynccontextmanager
async def async_chat_model(server: FakeOpenAIServer, **options: Any) -> AsyncIterator[ChatOpenAI]:
    # ChatOpenAI's default async client is cached per (base_url, timeout) for the whole process
    # and stays bound to the first event loop that used it; a client of our own belongs to this
    # loop, so a later asyncio.run on a recycled port cannot fail with "Event loop is closed".
    async with openai.DefaultAsyncHttpxClient() as client:
        yield chat_model(server, http_async_client=client, **options)


def test_chat_model_receives_text_and_usage(server: FakeOpenAIServer) -> None:
    server.enqueue(
        Reply(
            "Olá! Em que posso ajudar?", prompt_tokens=120, completion_tokens=15, cached_tokens=100
        )
    )

    message = chat_model(server).invoke([SystemMessage("Você é a Pet Feliz."), HumanMessage("oi")])

    assert message.content == "Olá! Em que posso ajudar?"
    assert isinstance(message, AIMessage)
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == 120
    assert message.usage_metadata["output_tokens"] == 15
    assert message.usage_metadata["total_tokens"] == 135
    assert message.usage_metadata.get("input_token_details", {}).get("cache_read") == 100
    (request,) = server.requests
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["messages"] == [
        {"role": "system", "content": "Você é a Pet Feliz."},
        {"role": "user", "content": "oi"},
    ]
    assert request.headers["authorization"] == "Bearer test-key"


def test_chat_model_estimates_usage_when_not_scripted(server: FakeOpenAIServer) -> None:
    server.enqueue(Reply("x" * 40))

    message = chat_model(server).invoke("y" * 80)

    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == 20
    assert message.usage_metadata["output_tokens"] == 10


def test_chat_model_parses_tool_calls(server: FakeOpenAIServer) -> None:
    call = ToolCall("book_bath", {"pet_name": "Rex", "day": "2025-03-14"}, "call_1")
    server.enqueue(Reply(None, [call]))

    message = chat_model(server).bind_tools([book_bath]).invoke("Quero um banho para o Rex")

    assert isinstance(message, AIMessage)
    assert message.content == ""
    assert message.tool_calls == [
        {
            "name": "book_bath",
            "args": {"pet_name": "Rex", "day": "2025-03-14"},
            "id": "call_1",
            "type": "tool_call",
        }
    ]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    (offered,) = server.requests[0].body["tools"]
    assert offered["function"]["name"] == "book_bath"
    assert set(offered["function"]["parameters"]["properties"]) == {"pet_name", "day"}


def test_chat_model_reports_malformed_arguments_as_invalid(server: FakeOpenAIServer) -> None:
    server.enqueue(Reply(None, [ToolCall("book_bath", '{"pet_name": "Rex", ', "call_2")]))

    message = chat_model(server).bind_tools([book_bath]).invoke("banho")

    assert isinstance(message, AIMessage)
    assert message.tool_calls == []
    (invalid,) = message.invalid_tool_calls
    assert (invalid["name"], invalid["id"], invalid["args"]) == (
        "book_bath",
        "call_2",
        '{"pet_name": "Rex", ',
    )


def test_chat_model_streams_text_tool_calls_and_usage(server: FakeOpenAIServer) -> None:
    call = ToolCall("book_bath", {"pet_name": "Thor", "day": "2025-03-15"}, "call_3")
    text = "Claro! Vou agendar o banho do Thor para amanhã."
    server.enqueue(Reply(text, [call], prompt_tokens=50, completion_tokens=30, cached_tokens=10))
    model = chat_model(server, stream_usage=True).bind_tools([book_bath])

    chunks = list(model.stream("banho do Thor amanhã"))

    assert len(chunks) > 3
    merged: AIMessageChunk | None = None
    for chunk in chunks:
        assert isinstance(chunk, AIMessageChunk)
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    assert merged.content == text
    assert [(c["name"], c["args"], c["id"]) for c in merged.tool_calls] == [
        ("book_bath", {"pet_name": "Thor", "day": "2025-03-15"}, "call_3")
    ]
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["input_tokens"] == 50
    assert merged.usage_metadata["output_tokens"] == 30
    assert merged.usage_metadata.get("input_token_details", {}).get("cache_read") == 10
    assert server.requests[0].body["stream_options"] == {"include_usage": True}


def test_server_streams_chunks_in_openai_order(server: FakeOpenAIServer) -> None:
    server.enqueue(Reply("Oi Rex", [ToolCall("book_bath", {"pet_name": "Rex"}, "call_4")]))
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "oi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    response = httpx.post(f"{server.base_url}/chat/completions", json=body)

    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text == "Oi Rex"
    tool_deltas = [d for c in chunks[:-1] for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert {d["index"] for d in tool_deltas} == {0}
    arguments = "".join(d["function"].get("arguments", "") for d in tool_deltas)
    assert json.loads(arguments) == {"pet_name": "Rex"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0


def test_server_omits_usage_chunk_unless_asked(server: FakeOpenAIServer) -> None:
    server.enqueue(Reply("ok"))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "oi"}], "stream": True}

    response = httpx.post(f"{server.base_url}/chat/completions", json=body)

    chunks = [json.loads(e[6:]) for e in response.text.split("\n\n") if e and e != "data: [DONE]"]
    assert all(chunk["choices"] for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)


def test_chat_model_retry_succeeds_after_server_error(server: FakeOpenAIServer) -> None:
    server.enqueue(Reply(status=500, retry_after=0.01), Reply("Agora foi."))

    message = chat_model(server, max_retries=1).invoke("oi")

    assert message.content == "Agora foi."
    assert len(server.requests) == 2
    assert server.requests[1].headers["x-stainless-retry-count"] == "1"


def test_chat_model_without_retries_raises_server_error(server: FakeOpenAIServer) -> None:
    server.enqueue(Reply(status=500))

    with pytest.raises(openai.InternalServerError) as raised:
        chat_model(server, max_retries=0).invoke("oi")

    assert raised.value.status_code == 500
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (429, openai.RateLimitError, "rate_limit_error"),
        (503, openai.InternalServerError, "server_error"),
        (400, openai.BadRequestError, "invalid_request_error"),
    ],
)
def test_chat_model_sees_openai_error_bodies(
    server: FakeOpenAIServer, status: int, error: type[openai.APIStatusError], kind: str
) -> None:
    server.enqueue(Reply("Limite atingido", status=status))

    with pytest.raises(error) as raised:
        chat_model(server).invoke("oi")

    assert raised.value.status_code == status
    assert raised.value.body == {
        "message": "Limite atingido",
        "type": kind,
        "param": None,
        "code": kind,
    }


def test_chat_model_fails_when_script_is_exhausted(server: FakeOpenAIServer) -> None:
    with pytest.raises(openai.InternalServerError, match="script exhausted"):
        chat_model(server).invoke("oi")


def test_chat_model_times_out_on_a_slow_reply(server: FakeOpenAIServer) -> None:
    # The server's stop() cuts the 5 s delay short, so teardown does not wait for it.
    server.enqueue(Reply("tarde demais", delay=5))

    with pytest.raises(openai.APITimeoutError):
        chat_model(server, timeout=0.3).invoke("oi")

    assert len(server.requests) == 1


def test_server_answers_concurrent_requests_together() -> None:
    async def ask_all(server: FakeOpenAIServer) -> list[AIMessage]:
        async with async_chat_model(server) as model:
            questions = [model.ainvoke(f"pergunta {n}") for n in range(30)]
            return await asyncio.gather(*questions)

    with FakeOpenAIServer(responder=lambda _body: Reply("ok"), latency=0.5) as server:
        answers = asyncio.run(ask_all(server))

        assert [answer.content for answer in answers] == ["ok"] * 30
        assert server.peak_in_flight == 30
        assert server.in_flight == 0
        assert len(server.requests) == 30


def test_server_stop_leaves_no_thread_and_refuses_connections() -> None:
    server = FakeOpenAIServer(responder=lambda _body: Reply("ok"))
    server.start()
    base_url = server.base_url
    assert httpx.get(f"{base_url}/models").status_code == 200

    server.stop()

    assert not [t for t in threading.enumerate() if t.name == "fake-openai-server"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/models")


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_server_entrypoint_serves_until_signalled(stop_signal: signal.Signals) -> None:
    command = [sys.executable, "-m", "zapvet.testing.openai_server", "--port", "0", "--text", "ok"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:")

            models = httpx.get(f"{base_url}/models").json()
            process.send_signal(stop_signal)

            assert models["object"] == "list"
            assert [model["id"] for model in models["data"]] == ["gpt-4o-mini"]
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
