"""Tracing: one trace per inbound message, from the webhook to the reply's send.

`setup_tracing` installs a tracer provider when an exporter is configured (the standard
OTEL_* variables, or one handed in by tests) and instruments LangChain/LangGraph (GenAI
semantic conventions: `invoke_agent`, `chat <model>`, `execute_tool <name>`), psycopg,
Redis and httpx. With no OTEL endpoint nothing is exported and nothing is instrumented.
Every span passes through `RedactingSpanExporter` on its way out.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.sdk.environment_variables import OTEL_TRACES_SAMPLER
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider, sampling
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from zapvet.config import Settings
from zapvet.otel.redaction import scrub_attributes, scrub_text

TRACER_NAME = "zapvet"
R = TypeVar("R")
#: The redacting exporter of each provider this module installed, by provider id.
_installed: dict[int, RedactingSpanExporter] = {}


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def node_span(graph: str, node: str) -> Any:
    """The span of one graph node's run; LLM and tool spans inside it become its children."""
    return tracer().start_as_current_span(
        f"node {node}",
        attributes={"langgraph.graph": graph, "langgraph.node": node},
    )


def traced_node(
    graph: str, node: str, run: Callable[..., Awaitable[R]]
) -> Callable[..., Awaitable[R]]:
    """`run` inside `node_span`; the signature LangGraph inspects (state, runtime) is kept."""

    @functools.wraps(run)
    async def node_run(*args: Any, **kwargs: Any) -> R:
        with node_span(graph, node):
            return await run(*args, **kwargs)

    return node_run


class DropOrphanClientSpans(Sampler):
    """Drop client spans that start a trace: a worker's Redis polling and heartbeats would
    otherwise fill the viewer with one-span traces (research/otel.md §10). Client spans
    inside a job have a parent and are kept by ParentBased. Other roots go to `root`: always
    on, or the sampler that OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG name."""

    def __init__(self, root: Sampler = ALWAYS_ON) -> None:
        self.root = root

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        result: SamplingResult = self.root.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        return result

    def get_description(self) -> str:
        return f"DropOrphanClientSpans{{{self.root.get_description()}}}"


def build_sampler() -> Sampler:
    """Children follow their parent; roots: no orphan client spans, then the OTEL_* sampler."""
    # The SDK's own reader of OTEL_TRACES_SAMPLER(_ARG), as TracerProvider() would use it.
    root = sampling._get_from_env_or_default() if os.environ.get(OTEL_TRACES_SAMPLER) else ALWAYS_ON
    orphans = DropOrphanClientSpans(root)
    # A caller's unsampled context (an instrumented HTTP client posting a webhook) must not
    # switch tracing off for the message: such spans are judged as roots are.
    return ParentBased(root=orphans, remote_parent_not_sampled=orphans)


class RedactingSpanExporter(SpanExporter):
    """Scrubs every span's attributes, events and status before the real exporter sees it."""

    def __init__(self, inner: SpanExporter, *, capture: bool) -> None:
        self._inner = inner
        #: Public so a test process can switch capture on and off under one provider.
        self.capture = capture

    def _clean(self, span: ReadableSpan) -> ReadableSpan:
        capture = self.capture
        events = [
            Event(event.name, scrub_attributes(event.attributes, capture=capture), event.timestamp)
            for event in span.events
        ]
        status = span.status
        if status.description:
            status = type(status)(
                status.status_code, scrub_text(status.description, capture=capture)
            )
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=scrub_attributes(span.attributes, capture=capture),
            events=events,
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([self._clean(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


@dataclass
class Telemetry:
    """The process's tracer provider, or none; flush it before the process exits."""

    provider: TracerProvider | None = None
    #: The exporter wrapper; its `capture` switch decides what content leaves the process.
    exporter: RedactingSpanExporter | None = None

    def flush(self, timeout_ms: int = 5_000) -> None:
        if self.provider is not None:
            self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.force_flush(5_000)
            self.provider.shutdown()


def setup_tracing(
    settings: Settings,
    service_name: str,
    *,
    exporter: SpanExporter | None = None,
    synchronous: bool = False,
) -> Telemetry:
    """Install tracing for this process, once; returns `Telemetry(None)` when not configured.

    `exporter` (tests) replaces the OTLP exporter the OTEL_* variables configure;
    `synchronous` exports each span as it ends instead of in batches.
    """
    if settings.otel_sdk_disabled or (exporter is None and settings.otel_endpoint is None):
        return Telemetry(None)
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return Telemetry(current, _installed.get(id(current)))  # already set up here
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    resource = Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    )
    provider = TracerProvider(resource=resource, sampler=build_sampler())
    safe = RedactingSpanExporter(exporter, capture=settings.capture_content)
    provider.add_span_processor(
        SimpleSpanProcessor(safe) if synchronous else BatchSpanProcessor(safe)
    )
    trace.set_tracer_provider(provider)
    _installed[id(provider)] = safe
    instrument_libraries(provider, capture=settings.capture_content)
    return Telemetry(provider, safe)


def flush_spans(timeout_ms: int = 5_000) -> None:
    """Export the spans still batched in this process (no-op when tracing is off)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_ms)


def set_content_capture(capture: bool) -> None:
    """Switch GenAI message capture, which that instrumentation reads from the environment."""
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = (
        "SPAN_ONLY" if capture else "NO_CONTENT"
    )


def _instrumentors() -> list[tuple[Any, dict[str, Any]]]:
    from opentelemetry.instrumentation.genai.langchain import LangChainInstrumentor
    from opentelemetry.instrumentation.httpx import (
        HTTPX2ClientInstrumentor,
        HTTPXClientInstrumentor,
    )
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    return [
        (LangChainInstrumentor(), {}),  # type: ignore[no-untyped-call]
        (PsycopgInstrumentor(), {"enable_commenter": False}),
        (RedisInstrumentor(), {}),
        (HTTPXClientInstrumentor(), {}),
        (HTTPX2ClientInstrumentor(), {}),
    ]


def instrument_libraries(provider: TracerProvider, *, capture: bool) -> None:
    """Trace LangChain (GenAI conventions), psycopg, Redis and httpx calls (idempotent).

    psycopg is traced at the driver: SQLAlchemy 2.1's instrumentation refuses to load, and
    one of the two is enough. Statements are recorded with placeholders, never values.
    """
    set_content_capture(capture)
    for instrumentor, options in _instrumentors():
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider, **options)


def uninstrument_libraries() -> None:
    """Undo `instrument_libraries` (tests that trace only some of their cases)."""
    for instrumentor, _ in _instrumentors():
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
