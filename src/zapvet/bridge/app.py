"""The webhook bridge (DESIGN §5): authenticate, parse, store, then ask for a drain.

Every accepted message is committed before the 200; the drain request after the commit may
fail (Redis down) without losing anything, because the scheduler's sweeper re-enqueues
pending rows. Bad input gets a 4xx with a JSON body, never a 500.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.bridge.cloud import parse_cloud, signed
from zapvet.bridge.events import Event, Inbound, PayloadError
from zapvet.bridge.evolution import parse_evolution
from zapvet.bridge.ingest import IngestReport, ingest
from zapvet.bridge.instances import Admitted, Instances, Refused
from zapvet.bridge.seams import CalendarReader, DrainQueue, MetricsReader, StatsReader
from zapvet.clock import Clock, system_clock
from zapvet.errors import PermanentError
from zapvet.logging import get_logger
from zapvet.media import stash
from zapvet.models import WhatsAppInstance
from zapvet.otel.metrics import field as metric_field
from zapvet.otel.metrics import key as metric_key
from zapvet.otel.tracing import tracer

#: Larger bodies are refused with 413. A text webhook is ~2 KB and media normally come as
#: references; Evolution's "webhook base64" puts the bytes inside, and a 16 MB voice note is
#: ~22 MB of base64. (Leave that setting off: the worker fetches media itself.)
MAX_BODY_BYTES = 32 * 1024 * 1024

log = get_logger("zapvet.bridge")


@dataclass
class BridgeState:
    """What the routes use, built in the server's event loop by the lifespan (`runtime.py`)."""

    sessions: async_sessionmaker[AsyncSession]
    enqueue: DrainQueue
    redis: aioredis.Redis
    namespace: str
    stats: StatsReader
    metrics: MetricsReader
    clock: Clock = system_clock
    #: Instance keys and organization configurations, kept for the process's lifetime.
    instances: Instances = field(default_factory=Instances)
    close: Callable[[], Awaitable[None]] | None = None
    #: The agenda's calendar feeds (None: not served by this process).
    calendar: CalendarReader | None = None


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


class _Refused(PermanentError):
    """A body refused before parsing (too large, not JSON); `response` says why."""

    def __init__(self, response: Response) -> None:
        self.response = response


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _Refused(_error(413, "payload_too_large", f"bodies over {MAX_BODY_BYTES} bytes"))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Refused(_error(413, "payload_too_large", f"bodies over {MAX_BODY_BYTES} bytes"))
        chunks.append(chunk)
    return b"".join(chunks)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Refused(_error(422, "invalid_json", f"the body is not JSON: {exc}")) from None
    except RecursionError:
        raise _Refused(_error(422, "invalid_json", "the body nests too deeply")) from None


async def _answered(webhook: Awaitable[Response]) -> Response:
    """The webhook's response, or the 4xx/503 that each failure it may meet deserves."""
    try:
        return await webhook
    except _Refused as refused:
        return refused.response
    except PayloadError as bad:
        return _error(422, "invalid_payload", bad.message)
    except (sa_exc.DataError, UnicodeEncodeError):  # rolled back: NUL, lone surrogate, too long
        return _error(422, "invalid_payload", _UNSTORABLE)
    # TimeoutError: no pooled connection within 30 s (a burst); 503 makes the gateway retry.
    except (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        OSError,
    ) as down:
        log.error("database unavailable", error_type=type(down).__name__)
        return _error(503, "unavailable", "storage is unavailable; retry later")


def _invalidated(error: BaseException) -> bool:
    """A pooled connection the server had dropped (restart, failover, idle kill)."""
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


def build_app(make_state: Callable[[], Awaitable[BridgeState]]) -> FastAPI:
    """The FastAPI app; `make_state` runs at startup inside the server's event loop."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.bridge = await make_state()
        try:
            yield
        finally:
            state: BridgeState = app.state.bridge
            if state.close is not None:
                await state.close()

    app = FastAPI(title="zapvet bridge", lifespan=lifespan, docs_url=None, redoc_url=None)

    def state_of(request: Request) -> BridgeState:
        return request.app.state.bridge  # type: ignore[no-any-return]

    async def accept(
        state: BridgeState,
        batches: list[tuple[str, list[Event]]],
        provider: str,
        accepts: Callable[[WhatsAppInstance], bool],
    ) -> Response:
        """Store every batch in one transaction (all or nothing), then ask for the drains.

        The transaction runs again, once, when its connection turns out to have been
        dropped (there is no pre-ping): nothing was committed, and the unique provider ids
        make a second run harmless anyway.
        """
        for attempt in (1, 2):
            try:
                reports = await store(state, batches, provider, accepts)
            except Refused as refused:
                return _refusal(provider, refused)
            except sa_exc.DBAPIError as error:
                if attempt == 2 or not _invalidated(error):
                    raise
                log.warning("database connection was dropped; running the webhook again")
                continue
            break
        await _count(state, reports)
        if len(reports) != 1:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "ok", **reports[0].as_json()})

    async def store(
        state: BridgeState,
        batches: list[tuple[str, list[Event]]],
        provider: str,
        accepts: Callable[[WhatsAppInstance], bool],
    ) -> list[IngestReport]:
        reports: list[IngestReport] = []
        async with state.sessions() as session:
            admitted = [
                (await state.instances.admit(session, provider, key, accepts), events)
                for key, events in batches
            ]

            async def confirm(current: Admitted, version: int) -> Admitted:
                return await state.instances.confirm(session, current, version, accepts)

            with ExitStack() as spans:
                for instance, events in admitted:
                    span = spans.enter_context(
                        tracer().start_as_current_span(
                            f"ingest {provider}",
                            attributes=_ingest_attributes(instance.instance, events),
                        )
                    )
                    report = await ingest(session, instance, events, state.clock(), confirm)
                    span.set_attributes(
                        {f"zapvet.ingest.{k}": v for k, v in report.as_json().items()}
                    )
                    reports.append(report)
                await session.commit()
                # Inside the ingest spans: each drain's trace starts under its webhook's ingest.
                for report in reports:
                    await _stash_media(state, report)
                    for conversation_id, delay_ms in report.drains.items():
                        try:
                            state.enqueue.request_drain(
                                conversation_id,
                                organization_id=report.organization_id,
                                delay_ms=delay_ms,
                            )
                        except Exception as exc:  # stored already; the sweeper will enqueue it
                            log.warning("could not enqueue a drain", error_type=type(exc).__name__)
        return reports

    async def evolution(request: Request, instance_name: str, event: str | None) -> Response:
        state = state_of(request)
        raw = await _body(request)
        token = request.headers.get("x-webhook-token", "").encode()

        def accepts(instance: WhatsAppInstance) -> bool:
            expected = instance.webhook_token
            return bool(expected) and hmac.compare_digest(token, (expected or "").encode())

        try:
            async with state.sessions() as session:  # refused before the body is even parsed
                await state.instances.admit(session, "evolution", instance_name, accepts)
        except Refused as refused:
            return _refusal("evolution", refused)
        events = parse_evolution(_json(raw), event=event)
        return await accept(state, [(instance_name, events)], "evolution", accepts)

    @app.post("/webhooks/evolution/{instance}")
    async def evolution_webhook(request: Request, instance: str) -> Response:
        return await _answered(evolution(request, instance, None))

    @app.post("/webhooks/evolution/{instance}/{event}")
    async def evolution_event_webhook(request: Request, instance: str, event: str) -> Response:
        return await _answered(evolution(request, instance, event))

    @app.get("/webhooks/cloud")
    async def cloud_verify(request: Request) -> Response:
        params = request.query_params
        mode, token = params.get("hub.mode"), params.get("hub.verify_token", "")
        challenge = params.get("hub.challenge", "")
        async with state_of(request).sessions() as session:
            tokens = await session.exec(
                select(WhatsAppInstance.verify_token).where(
                    WhatsAppInstance.provider == "cloud", col(WhatsAppInstance.is_active)
                )
            )
            known = [t for t in tokens if t]
        if mode == "subscribe" and any(
            hmac.compare_digest(token.encode(), t.encode()) for t in known
        ):
            return PlainTextResponse(challenge)
        return _error(403, "forbidden", "verification token does not match")

    async def cloud(request: Request) -> Response:
        state = state_of(request)
        raw = await _body(request)
        grouped: dict[str, list[Event]] = {}
        for phone_number_id, event in parse_cloud(_json(raw)):
            grouped.setdefault(phone_number_id, []).append(event)
        if not grouped:
            return JSONResponse({"status": "ok", "stored": 0, "duplicates": 0})
        signature = request.headers.get("x-hub-signature-256", "")

        def accepts(instance: WhatsAppInstance) -> bool:
            return signed(raw, signature, instance.app_secret)

        return await accept(state, list(grouped.items()), "cloud", accepts)

    @app.post("/webhooks/cloud")
    async def cloud_webhook(request: Request) -> Response:
        return await _answered(cloud(request))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        state = state_of(request)
        checks: dict[str, str] = {}
        instances: dict[str, dict[str, str | None]] = {}
        try:
            async with state.sessions() as session:
                await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
                checks["database"] = "ok"
                found = await session.exec(_CONNECTIONS)  # type: ignore[call-overload]
                instances = {
                    f"{slug}/{name}": {"provider": provider, "state": status, "since": since}
                    for slug, name, provider, status, since in found
                }
        except Exception as exc:  # readiness reports, it does not raise
            checks.setdefault("database", type(exc).__name__)
        try:
            await state.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = type(exc).__name__
        ready = all(value == "ok" for value in checks.values())
        # Detail, not readiness: a WhatsApp number logged out does not stop the webhooks.
        body = {"ready": ready, **checks, "instances": instances}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/calendar/{token}.ics")
    async def calendar(request: Request, token: str) -> Response:
        state = state_of(request)
        feed = await state.calendar(token) if state.calendar is not None else None
        if feed is None:
            return _error(404, "unknown calendar", "rotate the feed with `zapvet calendar rotate`")
        headers = {"Cache-Control": "private, max-age=300"}
        return Response(feed, media_type="text/calendar; charset=utf-8", headers=headers)

    @app.get("/stats")
    async def stats(request: Request) -> Response:
        state = state_of(request)
        return JSONResponse(await state.stats())

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        state = state_of(request)
        return Response(
            await state.metrics(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    # The webhook's server span is the root of each message's trace; probes make no traces.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=_UNTRACED, exclude_spans=["receive", "send"]
    )
    return app


# The calendar feeds too: their paths hold the feed's secret token.
_UNTRACED = "/healthz,/readyz,/metrics,/stats,/calendar/"
#: Each active instance's connection as its gateway last reported it (`instance_connections`;
#: None for a Cloud API number, or an Evolution instance that has reported nothing yet).
_CONNECTIONS = text(
    "SELECT o.slug, w.instance, w.provider, c.state,"
    " to_char(c.changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    " FROM whatsapp_instances w JOIN organizations o ON o.id = w.organization_id"
    " LEFT JOIN instance_connections c ON c.instance_id = w.id"
    " WHERE w.is_active ORDER BY o.slug, w.instance"
)
_UNSTORABLE = "a value is too long for its field or holds characters that cannot be stored"


def _refusal(provider: str, refused: Refused) -> JSONResponse:
    if refused.unknown:
        what = "Evolution instance" if provider == "evolution" else "phone_number_id"
        key = repr(refused.key) if provider == "evolution" else refused.key
        return _error(404, "unknown_instance", f"no {what} {key}")
    header = "X-Webhook-Token" if provider == "evolution" else "X-Hub-Signature-256"
    return _error(401, "unauthorized", f"missing or wrong {header}")


async def _count(state: BridgeState, reports: list[IngestReport]) -> None:
    """Add the webhook's outcomes to the shared counters in one round trip (metrics never
    fail the work they describe)."""
    amounts: dict[str, int] = {}
    for report in reports:
        for outcome, amount in report.as_json().items():
            if amount:
                amounts[outcome] = amounts.get(outcome, 0) + amount
    if not amounts:
        return
    with suppress_instrumentation(), contextlib.suppress(redis.RedisError):
        pipe = state.redis.pipeline(transaction=False)
        for outcome, amount in amounts.items():
            name = metric_field("c", "zapvet_inbound_messages_total", {"outcome": outcome})
            pipe.hincrby(metric_key(state.namespace), name, amount)
        await pipe.execute()


async def _stash_media(state: BridgeState, report: IngestReport) -> None:
    """Leave the media bytes the webhook carried in Redis for the worker; without them the
    worker asks the gateway, so a failure here loses nothing."""
    for organization_id, provider_id, base64 in report.inline_media:
        try:
            await stash.put(state.redis, state.namespace, organization_id, provider_id, base64)
        except Exception as exc:
            log.warning("could not keep the webhook's media bytes", error_type=type(exc).__name__)


def _ingest_attributes(instance: WhatsAppInstance, events: list[Event]) -> dict[str, Any]:
    """Opaque ids and counts; text and phone are added too, but the exporter blanks them
    unless ZAPVET_CAPTURE_CONTENT=true."""
    attributes: dict[str, Any] = {
        "zapvet.organization.id": instance.organization_id,
        "zapvet.instance.id": instance.id or 0,
        "zapvet.provider": instance.provider,
        "zapvet.events": len(events),
    }
    inbound = [event for event in events if isinstance(event, Inbound)]
    if inbound:
        attributes["zapvet.message.text"] = "\n".join(event.text for event in inbound)
        attributes["zapvet.sender.phone"] = inbound[0].sender.phone or ""
    return attributes
