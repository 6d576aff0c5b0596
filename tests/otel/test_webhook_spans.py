"""A webhook delivery is one `webhook deliver` span with the receiver's host, its status and
the event, and no trace holds the receiver's URL path (often its only credential)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.otel.conftest import Traced, only
from tests.webhooks.conftest import SECRET, apply_text, book, with_webhook
from tests.webhooks.test_delivery import emit_about, run_due
from zapvet import db
from zapvet.otel.tracing import tracer
from zapvet.testing.receiver import WebhookReceiver
from zapvet.testing.stack import MovableClock
from zapvet.webhooks.delivery import backoff

pytestmark = pytest.mark.anyio

PATH_SECRET = "n8n-0b5e9d1c-secret-path"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.build_async_engine(database_url, pool_size=2)
    yield db.async_session_maker(engine)
    await engine.dispose()


async def test_a_delivery_is_one_span_without_the_receivers_path(
    session: Session,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
    traced: Traced,
) -> None:
    org = apply_text(session, with_webhook(f"{receiver.url}/{PATH_SECRET}"))
    appointment = book(session, org)
    clock = MovableClock()
    await emit_about(sessions, org, appointment, now=clock())
    receiver.fail_next(503)
    # Inside a job's span, as the deliver_webhook actor runs (a root client span is dropped).
    with tracer().start_as_current_span("job"):
        async with httpx.AsyncClient() as http:
            assert await run_due(sessions, clock, http) == ["retrying"]
            clock.advance(backoff(1))
            assert await run_due(sessions, clock, http) == ["delivered"]

    spans = [s for s in traced.spans if s.name == "webhook deliver"]
    assert [s.attributes.get("http.response.status_code") for s in spans if s.attributes] == [
        503,
        204,
    ]
    span = only(spans[1:], "webhook deliver")
    assert span.attributes is not None
    assert span.attributes["server.address"] == "127.0.0.1"
    assert span.attributes["zapvet.webhook.event"] == "appointment.created"
    assert not spans[0].status.is_ok
    assert receiver.received[-1].path.endswith(PATH_SECRET)
    for recorded in traced.spans:
        assert PATH_SECRET not in str(recorded.attributes), recorded.name
        assert PATH_SECRET not in str([e.attributes for e in recorded.events]), recorded.name
