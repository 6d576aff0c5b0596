"""LangGraph Studio: `langgraph dev` serves both graphs, and each runs a turn on the real database.

The dev server runs with its blocking-call guard on, so a tool doing sync I/O in the event
loop fails here (and only here: pytest itself never notices).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from tests.cli.test_dev import free_port, wait_until_serving
from tests.conftest import zapvet
from zapvet.cli.studio import studio_context
from zapvet.embedded import ServiceUrls
from zapvet.errors import StudioContextError
from zapvet.models import AIInteraction, Organization
from zapvet.testing.openai_server import FakeOpenAIServer, Reply, ToolCall
from zapvet.tools.context import AuroraContext, ClientContext

ROOT = Path(__file__).resolve().parents[2]
LANGGRAPH = Path(sys.executable).with_name("langgraph")

needs_langgraph_cli = pytest.mark.skipif(
    not LANGGRAPH.exists(), reason="langgraph-cli[inmem] is not installed (pip install -e '.[dev]')"
)


def answer(body: dict[str, Any]) -> Reply:
    """One tool call on the first request of a turn, then a reply quoting the tool's result."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return Reply(text=f"Segue: {last['content']}")
    tools = {tool["function"]["name"] for tool in body.get("tools", [])}
    if "business_summary" in tools:
        dates = {"start_date": "2026-11-25", "end_date": "2026-11-25"}
        return Reply(tool_calls=[ToolCall("business_summary", dates)])
    return Reply(tool_calls=[ToolCall("list_services")])


def run(base: str, graph: str, text: str, context: dict[str, int]) -> dict[str, Any]:
    thread = httpx.post(f"{base}/threads", json={}).json()["thread_id"]
    response = httpx.post(
        f"{base}/threads/{thread}/runs/wait",
        json={
            "assistant_id": graph,
            "input": {"messages": [{"role": "user", "content": text}]},
            "context": context,
        },
        timeout=120,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@needs_langgraph_cli
@pytest.mark.slow
def test_langgraph_dev_serves_both_graphs_and_runs_a_turn_on_each(
    database_url: str,
    session: Session,
    client_context: ClientContext,
    owner: AuroraContext,
    tmp_path: Path,
) -> None:
    port = free_port()
    with FakeOpenAIServer(responder=answer) as llm:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": llm.base_url,
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        }
        log = (tmp_path / "langgraph-dev.log").open("w")  # outside the project: no reload loop
        server = subprocess.Popen(
            [str(LANGGRAPH), "dev", "--no-browser", "--no-reload",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(f"{base}/ok", server, (tmp_path / "langgraph-dev.log").read_text)

            assistants = httpx.post(f"{base}/assistants/search", json={}).json()
            assert {a["graph_id"] for a in assistants} >= {"client", "aurora"}

            client = run(base, "client", "Quais serviços vocês fazem?", vars(client_context))
            assert "Consulta" in client["messages"][-1]["content"]
            assert "R$ 120,00" in client["messages"][-1]["content"]

            aurora = run(base, "aurora", "Quantos clientes atendi hoje?", vars(owner))
            assert aurora["messages"][-1]["content"].startswith("Segue:")
            assert aurora["messages"][-2]["type"] == "tool"
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
            log.close()
    logged = (tmp_path / "langgraph-dev.log").read_text()
    assert "BlockingError" not in logged, logged

    turns = session.exec(select(AIInteraction)).all()
    assert sorted((t.ai_type, t.status) for t in turns) == [
        ("aurora", "success"),
        ("client", "success"),
    ]


@pytest.mark.anyio
async def test_studio_context_gives_the_ids_a_real_message_would_get(
    database_url: str, petfeliz: Organization
) -> None:
    customer = await studio_context(database_url, "petfeliz", "11 97777-6666")
    assert customer["organization_id"] == petfeliz.id
    assert set(customer) == {"organization_id", "contact_id", "conversation_id"}
    again = await studio_context(database_url, "petfeliz", "+5511977776666")
    assert again == customer  # same contact, same open conversation

    owner = await studio_context(database_url, "petfeliz", "+55 11 98888-7777")
    assert owner["owner_number_id"] > 0
    assert owner["contact_id"] != customer["contact_id"]

    with pytest.raises(StudioContextError, match="no organization 'nenhuma'"):
        await studio_context(database_url, "nenhuma", "+5511977776666")


def test_studio_context_command_names_the_graph_and_prints_the_json(
    database_url: str, services: ServiceUrls, petfeliz: Organization
) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": services.redis_url}
    owner = zapvet("studio-context", "--org", "petfeliz", "--as", "+55 11 98888-7777", env=env)
    assert owner.exit_code == 0, owner.output
    assert "graph: aurora" in owner.stderr.splitlines()
    assert json.loads(owner.stdout)["owner_number_id"] > 0
    customer = zapvet("studio-context", "--org", "petfeliz", env=env)
    assert "graph: client" in customer.stderr.splitlines()
    assert set(json.loads(customer.stdout)) == {"organization_id", "contact_id", "conversation_id"}

    missing = zapvet("studio-context", "--org", "nenhuma", env=env)
    assert missing.exit_code == 1
    assert "no organization 'nenhuma'" in missing.stderr
