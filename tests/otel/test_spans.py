"""One trace per inbound message: webhook → queue → drain → graph nodes → LLM/tools → send."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_openai import ChatOpenAI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from tests.conftest import EXAMPLE_ORG
from tests.otel.conftest import Traced, children, only
from zapvet.config import load_settings
from zapvet.embedded import ServiceUrls
from zapvet.llm.openai import build_chat_model
from zapvet.testing.openai_server import FakeOpenAIServer, Reply, ToolCall
from zapvet.testing.stack import LocalStack

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

CUSTOMER = "5511955554444"


@pytest.fixture
def llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def stack(
    traced: Traced, database_url: str, services: ServiceUrls, llm: FakeOpenAIServer
) -> Iterator[LocalStack]:
    model = build_chat_model(load_settings(openai_api_key="k", openai_base_url=llm.base_url))
    assert isinstance(model, ChatOpenAI)
    local = LocalStack(
        database_url=database_url,
        redis_url=services.redis_url,
        model=model,
        org_text=EXAMPLE_ORG.read_text(),
        debounce_seconds=0,
    )
    with local:
        yield local


def _descendants(spans: list[ReadableSpan], root: ReadableSpan) -> list[ReadableSpan]:
    found, frontier = [], [root]
    while frontier:
        kids = [k for parent in frontier for k in children(spans, parent)]
        found += kids
        frontier = kids
    return found


def _is_child(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return span.parent is not None and span.parent.span_id == parent.context.span_id


def test_one_message_is_one_trace_from_webhook_to_send(
    stack: LocalStack, llm: FakeOpenAIServer, traced: Traced
) -> None:
    llm.enqueue(
        Reply(tool_calls=[ToolCall("list_services", {})]),
        Reply(text="Temos banho, tosa e consulta."),
    )
    stack.gateway.fail_next(500)  # the drain's send fails; a send job retries it, same trace
    stack.say(CUSTOMER, "Quais serviços vocês têm?")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
    stack.wait(
        # "process outbound" ends after its "send evolution" child: wait for the outer one.
        lambda: sum(s.name == "process outbound" for s in traced.spans) == 1,
        what="the retried send's job span",
    )
    spans = traced.spans

    webhook = only(spans, "POST /webhooks/evolution/{instance}")
    assert webhook.kind is SpanKind.SERVER
    trace = [s for s in spans if s.context.trace_id == webhook.context.trace_id]
    ingest = only(trace, "ingest evolution")
    assert _is_child(ingest, webhook)
    assert ingest.attributes is not None
    assert ingest.attributes["zapvet.ingest.stored"] == 1

    # The queue: the consumer span is a child of the producer span, across threads.
    enqueue = only(trace, "send inbound")
    assert enqueue.kind is SpanKind.PRODUCER and _is_child(enqueue, ingest)
    drain = only(trace, "process inbound")
    assert drain.kind is SpanKind.CONSUMER and _is_child(drain, enqueue)
    route = only(trace, "route")
    assert _is_child(route, drain) and route.attributes == {"zapvet.agent": "client"}

    agent = only(trace, "invoke_agent client")
    assert _is_child(agent, drain)
    assert agent.attributes is not None
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    nodes = [s.name for s in children(trace, agent)]
    assert nodes == [
        "node prepare",
        "node agent",
        "node tools",
        "node agent",
        "node finalize",
    ]

    # Each LLM call under its node, with GenAI semantic-convention attributes and usage.
    chats = [s for s in trace if s.name == "chat gpt-4o-mini"]
    assert len(chats) == 2
    agent_nodes = [s for s in children(trace, agent) if s.name == "node agent"]
    for chat, node in zip(chats, agent_nodes, strict=True):
        assert _is_child(chat, node)
        attributes = chat.attributes or {}
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert attributes["gen_ai.usage.input_tokens"] > 0
        assert attributes["gen_ai.conversation.id"] == agent.attributes["gen_ai.conversation.id"]
        assert any(s.name == "POST" for s in children(trace, chat))

    # The tool call under the tools node, with the database queries it made inside it.
    tool = only(trace, "execute_tool list_services")
    assert _is_child(tool, only(trace, "node tools"))
    assert (tool.attributes or {})["gen_ai.tool.name"] == "list_services"
    assert any(
        (s.attributes or {}).get("db.system") == "postgresql" for s in _descendants(trace, tool)
    )
    assert any((s.attributes or {}).get("db.system") == "redis" for s in children(trace, drain))

    # The reply's send: tried by the drain right after its commit; the failed attempt hands
    # the row to a send job (its first retry), in the same trace.
    delivered = sorted(
        (s for s in trace if s.name == "send evolution"), key=lambda s: s.start_time or 0
    )
    assert [(s.attributes or {}).get("zapvet.send.parts") for s in delivered] == [None, 1]
    assert delivered[0] in _descendants(trace, drain)
    outbox = only(trace, "send outbound")
    assert outbox.kind is SpanKind.PRODUCER and outbox in _descendants(trace, drain)
    retry = only(trace, "process outbound")
    assert _is_child(retry, outbox) and _is_child(delivered[1], retry)
    gateway_calls = [c for s in delivered for c in children(trace, s) if c.name == "POST"]
    assert [(c.attributes or {}).get("http.status_code") for c in gateway_calls] == [500, 201]


def test_redis_polling_makes_no_root_spans(
    stack: LocalStack, llm: FakeOpenAIServer, traced: Traced
) -> None:
    llm.enqueue(Reply(text="Olá!"))
    stack.say(CUSTOMER, "Oi")
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the reply")
    # The idle worker keeps polling Redis while we wait for the job's span: a span is
    # recorded when it ends, and the job's ends last (after the send, the lock's release and
    # the job's metrics), so until then its children would look like roots.
    stack.wait(
        lambda: any(s.name == "process inbound" for s in traced.spans), what="the job's span"
    )
    orphans = [s.name for s in traced.spans if s.parent is None and s.kind is SpanKind.CLIENT]
    assert orphans == []
    # The webhook span continues the test's HTTP client span (recorded nowhere): a root here.
    ids = {s.context.span_id for s in traced.spans}
    roots = [s.name for s in traced.spans if s.parent is None or s.parent.span_id not in ids]
    assert roots == ["POST /webhooks/evolution/{instance}"]
