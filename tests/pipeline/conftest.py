"""A running pipeline per test: bridge over HTTP, Dramatiq worker on Redis, fake gateway."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import redis
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from sqlalchemy import Engine, text

from tests.conftest import EXAMPLE_ORG
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import Organization
from zapvet.testing.gateways import FakeEvolutionAPI
from zapvet.testing.stack import API_KEY, INSTANCE, LocalStack, MovableClock


def new_messages(messages: Sequence[BaseMessage]) -> list[str]:
    """This turn's customer messages: the human turns after the per-turn context prompt."""
    last_system = max(i for i, m in enumerate(messages) if isinstance(m, SystemMessage))
    return [str(m.content) for m in messages[last_system + 1 :] if isinstance(m, HumanMessage)]


def echo(messages: Sequence[BaseMessage]) -> AIMessage:
    """A model that answers every turn with the customer messages it addresses, in order."""
    return AIMessage("Recebi: " + " | ".join(new_messages(messages)))


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


SCRIPTS: dict[str, list[AIMessage]] = {
    "escalating": [
        AIMessage(
            "",
            tool_calls=[
                {"name": "escalate_to_human", "args": {"reason": "vômito com sangue"}, "id": None}
            ],
        ),
        AIMessage("Procure um veterinário já!"),
    ],
}


@pytest.fixture
def model(request: pytest.FixtureRequest) -> ScriptedChatModel:
    """The echo model, or a script from SCRIPTS named by indirect parametrization."""
    name = getattr(request, "param", None)
    if name is None:
        return ScriptedChatModel(responder=echo)
    return ScriptedChatModel(script=list(SCRIPTS[name]))


@pytest.fixture
def debounce() -> int:
    return 0


@pytest.fixture
def stack(
    database_url: str,
    services: ServiceUrls,
    model: ScriptedChatModel,
    clock: MovableClock,
    debounce: int,
) -> Iterator[LocalStack]:
    local = LocalStack(
        database_url=database_url,
        redis_url=services.redis_url,
        model=model,
        org_text=EXAMPLE_ORG.read_text(),
        debounce_seconds=debounce,
        clock=clock,
    )
    with local:
        yield local
    client = redis.Redis.from_url(services.redis_url)
    for key in client.scan_iter(match=f"{local.namespace}:*"):
        client.delete(key)
    client.close()


def scalar(engine: Engine, sql: str, **params: object) -> object:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def rows(engine: Engine, sql: str, **params: object) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), params)]


@pytest.fixture
def gateway(engine: Engine, petfeliz: Organization) -> Iterator[FakeEvolutionAPI]:
    """The example shop's Evolution instance, pointed at a fake gateway."""
    with FakeEvolutionAPI(api_key=API_KEY, instances=[INSTANCE]) as fake:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE whatsapp_instances SET api_url = :url"), {"url": fake.base_url}
            )
        yield fake
