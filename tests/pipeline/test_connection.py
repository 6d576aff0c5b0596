"""Connection health: Evolution's connection events stored, shown, and told to the owners."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import EXAMPLE_ORG
from tests.pipeline.conftest import rows
from tests.pipeline.support import Recorder, zapvet
from zapvet import db
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.proactive.connection import UNDELIVERABLE
from zapvet.queue.scheduler import tick
from zapvet.testing.stack import INSTANCE, LocalStack, MovableClock

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

SECOND = "petfeliz-balcao"
OWNER = "5511988887777"  # "+55 11 98888-7777" in the example file


def with_second_instance(org_text: str) -> str:
    """The example shop with a second Evolution number (the counter's phone)."""
    table = "\n".join(
        [
            "[[whatsapp]]",
            'provider = "evolution"',
            f'instance = "{SECOND}"',
            'api_url = "http://127.0.0.1:8081"',
            'api_key = "evo-secret"',
            'webhook_token = "hook-secret-2"',
            "",
        ]
    )
    at = org_text.index("[[owners]]")
    return org_text[:at] + table + "\n" + org_text[at:]


@pytest.fixture
def second(request: pytest.FixtureRequest) -> bool:
    return bool(getattr(request, "param", False))


@pytest.fixture
def stack(
    database_url: str, services: ServiceUrls, clock: MovableClock, second: bool
) -> Iterator[LocalStack]:
    text = EXAMPLE_ORG.read_text()
    local = LocalStack(
        database_url=database_url,
        redis_url=services.redis_url,
        model=ScriptedChatModel(responder=lambda _: pytest.fail("no turn expected")),
        org_text=with_second_instance(text) if second else text,
        debounce_seconds=0,
        clock=clock,
    )
    with local:
        local.gateway.instances.add(SECOND)
        yield local


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.build_async_engine(database_url, pool_size=2)
    yield db.async_session_maker(engine)
    await engine.dispose()


def connection(engine: Engine) -> list[tuple[object, ...]]:
    return rows(
        engine,
        "SELECT c.state, c.reason, c.changed_at, c.seen_at, c.alerted_at IS NOT NULL"
        " FROM instance_connections c JOIN whatsapp_instances w ON w.id = c.instance_id"
        " WHERE w.instance = :name",
        name=INSTANCE,
    )


def alerts(engine: Engine) -> list[tuple[object, ...]]:
    return rows(
        engine,
        "SELECT status, error, content FROM aurora_proactive_messages"
        " WHERE message_type = 'connection_alert' ORDER BY id",
    )


def test_connection_events_are_stored_with_the_time_of_the_change(
    stack: LocalStack, engine: Engine, clock: MovableClock
) -> None:
    assert stack.post(stack.gateway.connection_update(INSTANCE, "connecting")).status_code == 200
    before = clock()
    stack.post(stack.gateway.connection_update(INSTANCE, "open")).raise_for_status()
    after = clock()
    clock.advance(timedelta(minutes=5))
    again = stack.post(stack.gateway.connection_update(INSTANCE, "open"))  # no change

    assert again.json()["updated"] == 1
    ((state, reason, changed_at, seen_at, alerted),) = connection(engine)
    assert (state, reason, alerted) == ("open", 200, False)
    assert before <= changed_at <= after  # type: ignore[operator]
    assert seen_at - changed_at >= timedelta(minutes=5)  # type: ignore[operator]

    stack.post(stack.gateway.qrcode_updated(INSTANCE)).raise_for_status()
    assert connection(engine)[0][:2] == ("qrcode", None)


def test_connection_event_with_a_wrong_token_is_refused(stack: LocalStack, engine: Engine) -> None:
    response = stack.post(stack.gateway.connection_update(INSTANCE, "close"), token="wrong")

    assert response.status_code == 401
    assert connection(engine) == []


async def test_connection_lost_with_no_other_instance_is_recorded_undeliverable(
    stack: LocalStack,
    engine: Engine,
    sessions: async_sessionmaker[AsyncSession],
    clock: MovableClock,
) -> None:
    stack.post(stack.gateway.connection_update(INSTANCE, "close", reason=401)).raise_for_status()
    recorder = Recorder()

    first = await tick(sessions, recorder, clock())
    second = await tick(sessions, recorder, clock())

    assert (first.connections, second.connections) == (0, 0)
    ((status, error, content),) = alerts(engine)  # one owner number in the example
    assert (status, error) == ("cancelled", UNDELIVERABLE)
    assert "desconectou" in str(content) and "Aparelhos conectados" in str(content)
    assert connection(engine)[0][4] is True  # alerted: told once per outage
    assert recorder.proactive_ids == []
    # Connected again: now the owner can be told, through the instance itself.
    clock.advance(timedelta(minutes=1))
    stack.post(stack.gateway.connection_update(INSTANCE, "open")).raise_for_status()
    assert (await tick(sessions, recorder, clock())).connections == 1
    assert alerts(engine)[-1][0] == "pending"
    assert "voltou a conectar" in str(alerts(engine)[-1][2])
    assert len(recorder.proactive_ids) == 1


@pytest.mark.parametrize("second", [True], indirect=True)
async def test_connection_lost_is_told_to_the_owner_through_the_other_instance(
    stack: LocalStack,
    engine: Engine,
    sessions: async_sessionmaker[AsyncSession],
    clock: MovableClock,
) -> None:
    stack.post(stack.gateway.connection_update(INSTANCE, "close", reason=401)).raise_for_status()

    report = await tick(sessions, stack.queue, clock())

    assert report.connections == 1
    stack.wait(lambda: len(stack.gateway.sent) == 1, what="the owner's alert")
    (sent,) = stack.gateway.sent
    assert sent.chat_id == OWNER
    assert "desconectou" in sent.text
    assert "sessão foi encerrada no celular" in sent.text
    sends = [r.path for r in stack.gateway.requests if r.path.startswith("/message/")]
    assert sends == [f"/message/sendText/{SECOND}"]
    # The gateway has it; the worker settles the row right after (a moment later on a busy
    # machine): wait for that, rather than read the row the instant the gateway answered.
    stack.wait(lambda: alerts(engine)[0][0] == "sent", what="the alert's row settled")
    # Back: told so (through the first working instance, the one that came back).
    clock.advance(timedelta(minutes=1))
    stack.post(stack.gateway.connection_update(INSTANCE, "open")).raise_for_status()
    assert (await tick(sessions, stack.queue, clock())).connections == 1
    stack.wait(lambda: len(stack.gateway.sent) == 2, what="the owner's all-clear")
    assert "voltou a conectar" in stack.gateway.sent[1].text
    assert (await tick(sessions, stack.queue, clock())).connections == 0  # told once
    # Down again: a new outage, told again.
    clock.advance(timedelta(minutes=1))
    stack.post(stack.gateway.connection_update(INSTANCE, "close")).raise_for_status()
    assert (await tick(sessions, stack.queue, clock())).connections == 1


def test_connection_state_in_readyz(stack: LocalStack) -> None:
    stack.post(stack.gateway.connection_update(INSTANCE, "close")).raise_for_status()

    body = httpx.get(f"{stack.bridge_url}/readyz", timeout=30).json()

    assert body["ready"] is True  # the bridge still takes webhooks
    assert body["instances"][f"petfeliz/{INSTANCE}"]["state"] == "close"


def test_connection_state_in_zapvet_status(stack: LocalStack) -> None:
    stack.post(stack.gateway.connection_update(INSTANCE, "close")).raise_for_status()

    shown = zapvet(
        "status",
        database_url=stack.database_url,
        redis_url=stack.redis_url,
        namespace=stack.namespace,
    )

    assert shown.exit_code == 0, shown.output
    assert f"    {INSTANCE}: close since " in shown.stdout
