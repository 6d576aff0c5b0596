"""Delivering the outbox's events: claim, sign, POST, settle; retries for 24 hours, then dead.

The scheduler claims the deliveries that are due and at the head of their line (`claim_due`:
no earlier delivery of the same endpoint about the same resource is still waiting), and the
delivery actor attempts each (`attempt`). A delivery that fails waits `backoff(attempts)`
(10 s doubling up to 15 minutes: a receiver down for an hour gets its events at most 15
minutes after it is back, for about a hundred attempts a day on each blocked line) and keeps
the rest of its line waiting behind it; once its event is 24 hours old a failure makes it
`dead`, and the line moves on. When one is settled, the next of its line is claimed at
once and returned, so a line is not paced by the sweep.

410 Gone disables the endpoint (its deliveries wait, nothing is dropped) and the caller
tells the owners. Only a short excerpt of a failed response's body is kept, scrubbed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

import httpx
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet import __version__
from zapvet.cleaning import clean_text
from zapvet.clock import Clock
from zapvet.logging import get_logger
from zapvet.otel.redaction import scrub_text
from zapvet.otel.tracing import tracer
from zapvet.webhooks.signing import HEADER, sign
from zapvet.webhooks.targets import TargetRefused, resolve

log = get_logger("zapvet.webhooks.delivery")

#: An event is retried for this long after it happened; a failure later makes it dead.
RETRY_FOR = timedelta(hours=24)
FIRST_RETRY = timedelta(seconds=10)
LONGEST_WAIT = timedelta(minutes=15)
#: A claimed delivery is the actor's for this long; past it the sweep claims it again (a
#: queue message lost with Redis, a killed worker). Longer than a request's timeout.
LEASE = timedelta(minutes=2)
TIMEOUT_S = 10.0
#: Characters of a failed response's body kept (scrubbed), for `zapvet webhooks deliveries`.
EXCERPT_CHARS = 200
USER_AGENT = f"zapvet-webhooks/{__version__}"

Result = Literal["delivered", "retrying", "dead", "gone", "skipped"]


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt."""
    wait: timedelta = FIRST_RETRY * 2 ** min(max(attempts - 1, 0), 20)
    return min(wait, LONGEST_WAIT)


def excerpt(body: str) -> str:
    """A failed response's body as stored: its start, one line, phone numbers masked."""
    return scrub_text(clean_text(" ".join(body.split()), limit=EXCERPT_CHARS), capture=False)


def event_id(uid: UUID) -> str:
    """An event's public id: the same on every retry, so receivers can drop duplicates."""
    return f"evt_{uid.hex}"


def envelope(
    uid: UUID, event_type: str, created_at: datetime, slug: str, timezone: str, data: Any
) -> bytes:
    """The body receivers get (docs/webhooks.md)."""
    document = {
        "id": event_id(uid),
        "type": event_type,
        "created_at": created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "organization": {"slug": slug, "timezone": timezone},
        "data": data,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Request:
    """One POST as sent: to `url`, with these headers and body."""

    url: str
    body: bytes
    headers: dict[str, str]


def request(
    url: str, secret: str, body: bytes, *, event_type: str, event: str, delivery: str, now: float
) -> Request:
    return Request(
        url=url,
        body=body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Zapvet-Event": event_type,
            "X-Zapvet-Event-Id": event,
            "X-Zapvet-Delivery": delivery,
            HEADER: sign(secret, body, int(now)),
        },
    )


@dataclass(frozen=True)
class Response:
    """What came back: a status (None: no answer) and the scrubbed excerpt of a failure."""

    status: int | None
    error: str | None
    elapsed_ms: float


async def post(
    http: httpx.AsyncClient, sent: Request, *, allow_private: bool, timeout_s: float = TIMEOUT_S
) -> Response:
    """POST `sent` to the addresses its URL resolves to now, checked (`targets.resolve`)."""
    started = time.perf_counter()

    def took() -> float:
        return (time.perf_counter() - started) * 1000

    attributes = {
        "server.address": urlsplit(sent.url).hostname or "",
        "zapvet.webhook.event": sent.headers.get("X-Zapvet-Event", ""),
        "zapvet.webhook.delivery": sent.headers.get("X-Zapvet-Delivery", ""),
    }
    # Our own span, and the httpx instrumentation's suppressed: a receiver's URL path is
    # often its only credential (n8n, Zapier), so traces get the host only.
    with tracer().start_as_current_span(
        "webhook deliver", kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        status, error = await _post(http, sent, allow_private=allow_private, timeout_s=timeout_s)
        ok = status is not None and 200 <= status < 300
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if not ok:  # a refusal with an empty body has no error excerpt: still a failure
            failed = f"HTTP {status}" if status is not None else "no answer"
            span.set_status(Status(StatusCode.ERROR, failed))
        span.set_attribute("zapvet.webhook.ok", ok)
    return Response(status, error, took())


async def _post(
    http: httpx.AsyncClient, sent: Request, *, allow_private: bool, timeout_s: float
) -> tuple[int | None, str | None]:
    """The answer's status (None: none) and, for a failure, its scrubbed excerpt."""
    try:
        target = await resolve(sent.url, allow_private=allow_private)
    except TargetRefused as refused:
        return None, f"refused: {refused}"
    try:
        with suppress_http_instrumentation():
            response = await http.post(
                target.pinned_url(),
                content=sent.body,
                headers={**sent.headers, "Host": _host_header(sent.url)},
                extensions={"sni_hostname": target.host},
                timeout=timeout_s,
                follow_redirects=False,
            )
    except httpx.TimeoutException:
        return None, f"no answer within {timeout_s:g} s"
    except httpx.HTTPError as error:
        return None, excerpt(f"{type(error).__name__}: {error}")
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, excerpt(response.text) or None


def _host_header(url: str) -> str:
    parsed = httpx.URL(url)
    default = 443 if parsed.scheme == "https" else 80
    host = parsed.host if ":" not in parsed.host else f"[{parsed.host}]"
    return host if parsed.port in (None, default) else f"{host}:{parsed.port}"


_WAITING = "status IN ('pending', 'queued')"
_HEAD = f"""NOT EXISTS (
    SELECT 1 FROM webhook_deliveries e
     WHERE e.endpoint_id = d.endpoint_id AND e.resource = d.resource AND e.id < d.id
       AND e.{_WAITING})"""

_CLAIM_DUE = text(f"""
UPDATE webhook_deliveries SET status = 'queued', next_attempt_at = :lease, updated_at = :now
 WHERE id IN (
    SELECT d.id FROM webhook_deliveries d
      JOIN webhook_endpoints p ON p.id = d.endpoint_id
     WHERE d.{_WAITING} AND d.next_attempt_at <= :now
       AND p.enabled AND p.disabled_at IS NULL AND {_HEAD}
     ORDER BY d.next_attempt_at
     LIMIT :limit
       FOR UPDATE OF d SKIP LOCKED)
RETURNING id
""")

_CLAIM_ONE = text(f"""
UPDATE webhook_deliveries d
   SET status = 'queued', attempts = d.attempts + 1, next_attempt_at = :lease, updated_at = :now
  FROM webhook_events v, webhook_endpoints p, organizations o
 WHERE d.id = :id AND d.{_WAITING} AND {_HEAD}
   AND v.id = d.event_id AND p.id = d.endpoint_id AND o.id = d.organization_id
   AND p.enabled AND p.disabled_at IS NULL
RETURNING d.attempts, d.endpoint_id, d.resource, d.organization_id, v.uid, v.type,
          v.created_at, d.retry_from, v.data, p.url, p.secret, p.allow_private_targets,
          o.slug, o.timezone
""")

_SETTLE = text("""
UPDATE webhook_deliveries
   SET status = :status, next_attempt_at = :next, last_status_code = :code,
       last_error = :error, delivered_at = :delivered, updated_at = :now
 WHERE id = :id
""")

_GONE = text("""
UPDATE webhook_endpoints SET disabled_at = :now, disabled_reason = :reason
 WHERE id = :id AND disabled_at IS NULL
RETURNING id
""")

_NEXT = text(f"""
UPDATE webhook_deliveries SET status = 'queued', next_attempt_at = :lease, updated_at = :now
 WHERE id = (
    SELECT d.id FROM webhook_deliveries d
     WHERE d.endpoint_id = :endpoint AND d.resource = :resource AND d.{_WAITING}
     ORDER BY d.id LIMIT 1
       FOR UPDATE SKIP LOCKED)
   AND next_attempt_at <= :now
RETURNING id
""")


async def claim_due(session: AsyncSession, now: datetime, *, limit: int = 200) -> list[int]:
    """Claim the deliveries due now at the head of their lines; their ids, for the actor."""
    connection = await session.connection()
    rows = await connection.execute(_CLAIM_DUE, {"now": now, "lease": now + LEASE, "limit": limit})
    return [int(row[0]) for row in rows]


@dataclass(frozen=True)
class Attempt:
    """How one attempt went; `following`: the next delivery of its line, claimed for the
    actor; `endpoint_id`/`organization_id` say whose endpoint answered 410."""

    result: Result
    status: int | None = None
    error: str | None = None
    following: int | None = None
    endpoint_id: int | None = None
    organization_id: int | None = None
    url: str | None = None


async def attempt(
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    delivery_id: int,
    *,
    clock: Clock,
    timeout_s: float = TIMEOUT_S,
) -> Attempt:
    """Attempt delivery `delivery_id` once, if it is still waiting and heads its line."""
    now = clock()
    async with sessions() as session, session.begin():
        connection = await session.connection()
        row = (
            await connection.execute(
                _CLAIM_ONE, {"id": delivery_id, "now": now, "lease": now + LEASE}
            )
        ).first()
    if row is None:
        return Attempt("skipped")
    (
        attempts,
        endpoint_id,
        resource,
        organization_id,
        uid,
        event_type,
        created_at,
        retry_from,
        data,
        url,
        secret,
        allow_private,
        slug,
        timezone,
    ) = row
    body = envelope(uid, event_type, created_at, slug, timezone, data)
    sent = request(
        url,
        secret,
        body,
        event_type=event_type,
        event=event_id(uid),
        delivery=str(delivery_id),
        now=time.time(),  # the receiver's replay check is against the real time
    )
    response = await post(http, sent, allow_private=allow_private, timeout_s=timeout_s)
    now = clock()
    settled: dict[str, Any] = {
        "id": delivery_id,
        "now": now,
        "code": response.status,
        "error": response.error,
        "delivered": None,
        "next": now,
    }
    result: Result
    if response.status is not None and 200 <= response.status < 300:
        result = "delivered"
        settled.update(status="delivered", delivered=now)
    elif response.status == 410:
        result = "gone"
        settled.update(status="pending", error="410 Gone: the endpoint was disabled")
    elif now - retry_from >= RETRY_FOR:
        result = "dead"
        settled.update(status="dead")
    else:
        result = "retrying"
        settled.update(status="pending", next=now + backoff(attempts))
    following = None
    async with sessions() as session, session.begin():
        connection = await session.connection()
        await connection.execute(_SETTLE, settled)
        if result == "gone":
            reason = f"the receiver answered 410 Gone at {now:%Y-%m-%d %H:%M} UTC"
            disabled = await connection.execute(
                _GONE, {"id": endpoint_id, "now": now, "reason": reason}
            )
            if disabled.first() is None:
                result = "retrying"  # disabled already: its owners were told then
        elif result in ("delivered", "dead"):
            found = await connection.scalar(
                _NEXT,
                {"endpoint": endpoint_id, "resource": resource, "now": now, "lease": now + LEASE},
            )
            following = int(found) if found is not None else None
    log.info(
        "webhook delivery",
        organizationId=organization_id,
        endpointId=endpoint_id,
        deliveryId=delivery_id,
        eventType=event_type,
        result=result,
        status=response.status,
        attempts=attempts,
        durationMs=round(response.elapsed_ms, 1),
    )
    return Attempt(
        result,
        status=response.status,
        error=response.error,
        following=following,
        endpoint_id=endpoint_id,
        organization_id=organization_id,
        url=url,
    )
