"""A webhook delivery is one `webhook deliver` span with the receiver's host, its status and
the event, and no trace holds the receiver's URL path (often its only credential)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import Session

from tests.otel.conftest import Traced, capture, only, traced
from tests.webhooks.conftest import Shop
from zapvet.otel.tracing import tracer
from zapvet.testing.receiver import WebhookReceiver
from zapvet.webhooks.delivery import backoff

pytestmark = pytest.mark.anyio
__all__ = ["capture", "traced"]  # the tracing fixtures, shared with tests/otel

PATH_SECRET = "n8n-0b5e9d1c-secret-path"


async def test_a_delivery_is_one_span_without_the_receivers_path(
    session: Session, shop: Shop, receiver: WebhookReceiver, traced: Traced
) -> None:
    session.execute(
        text("UPDATE webhook_endpoints SET url = :new WHERE url = :old"),
        {"new": f"{receiver.url}/{PATH_SECRET}", "old": receiver.url},
    )
    session.commit()
    await shop.emit()
    receiver.fail_next(503)
    # Inside a job's span, as the deliver_webhook actor runs (a root client span is dropped).
    with tracer().start_as_current_span("job"):
        assert await shop.run_due() == ["retrying"]
        shop.clock.advance(backoff(1))
        assert await shop.run_due() == ["delivered"]

    spans = [s for s in traced.spans if s.name == "webhook deliver"]
    assert [(s.attributes or {}).get("http.response.status_code") for s in spans] == [503, 204]
    span = only(spans[1:], "webhook deliver")
    assert span.attributes is not None
    assert span.attributes["server.address"] == "127.0.0.1"
    assert span.attributes["zapvet.webhook.event"] == "appointment.created"
    assert not spans[0].status.is_ok
    assert receiver.received[-1].path.endswith(PATH_SECRET)
    for recorded in traced.spans:  # nowhere in the trace: the path is a credential
        assert PATH_SECRET not in str(recorded.attributes), recorded.name
        assert PATH_SECRET not in str([e.attributes for e in recorded.events]), recorded.name


async def test_a_refusal_with_no_body_is_a_failed_span(
    shop: Shop, receiver: WebhookReceiver, traced: Traced
) -> None:
    receiver.bare = True
    await shop.emit()
    receiver.fail_next(502)
    with tracer().start_as_current_span("job"):
        assert await shop.run_due() == ["retrying"]
    span = only(traced.spans, "webhook deliver")
    assert span.attributes is not None and span.attributes["zapvet.webhook.ok"] is False
    assert not span.status.is_ok and span.status.description == "HTTP 502"
