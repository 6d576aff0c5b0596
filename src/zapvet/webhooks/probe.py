"""`zapvet webhooks test`: one `webhook.test` event sent at once to endpoints, outside the
outbox (nothing is stored, nothing retried), signed and SSRF-checked like every delivery.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

import httpx
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.webhooks.delivery import TIMEOUT_S, Response, envelope, event_id, post, request
from zapvet.webhooks.events import TEST_EVENT

#: The test event's `data` (docs/webhooks/webhook.test.schema.json).
TEST_DATA = {"message": "teste do zapvet"}
#: Its `X-Zapvet-Delivery`: it is no stored delivery.
TEST_DELIVERY = "test"


@dataclass(frozen=True)
class Probe:
    """Where a test event goes: an endpoint with what signing and sending it needs."""

    endpoint_id: int
    url: str
    secret: str
    allow_private_targets: bool
    #: False: off in the organization file, or disabled by a 410.
    sending: bool


_PROBES = text("""
SELECT id, url, secret, allow_private_targets, enabled AND disabled_at IS NULL
  FROM webhook_endpoints
 WHERE organization_id = :org AND (CAST(:id AS bigint) IS NULL OR id = :id)
 ORDER BY id
""")


async def probes(session: AsyncSession, org_id: int, endpoint_id: int | None) -> list[Probe]:
    """Endpoint `endpoint_id` of the organization, or all of them (sending or not)."""
    connection = await session.connection()
    rows = await connection.execute(_PROBES, {"org": org_id, "id": endpoint_id})
    return [Probe(*row) for row in rows]


async def send_test(
    http: httpx.AsyncClient,
    probe: Probe,
    *,
    slug: str,
    timezone: str,
    now: datetime,
    timeout_s: float = TIMEOUT_S,
) -> Response:
    """POST one `webhook.test` event to `probe`'s URL, as `delivery.attempt` posts events."""
    uid = uuid4()
    body = envelope(uid, TEST_EVENT, now, slug, timezone, TEST_DATA)
    sent = request(
        probe.url,
        probe.secret,
        body,
        event_type=TEST_EVENT,
        event=event_id(uid),
        delivery=TEST_DELIVERY,
        now=time.time(),  # the receiver's replay check is against the real time
    )
    return await post(http, sent, allow_private=probe.allow_private_targets, timeout_s=timeout_s)


def client() -> httpx.AsyncClient:
    """A client as the delivery actor's: no kept-alive connections (each request goes to the
    address just checked), no proxy from the environment."""
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), trust_env=False)
