"""The standard OTEL_TRACES_SAMPLER variables choose which messages are traced; orphan client
spans (Redis polling) are dropped whatever they say, and a message's spans follow its root."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from zapvet.otel.tracing import build_sampler


def traced(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    """Names of the spans exported for 20 webhooks (each with a child) and 20 Redis polls."""
    for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=build_sampler())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for _ in range(20):
        with (
            tracer.start_as_current_span("POST /webhooks", kind=SpanKind.SERVER),
            tracer.start_as_current_span("INSERT", kind=SpanKind.CLIENT),
        ):
            pass
        with tracer.start_as_current_span("EVALSHA", kind=SpanKind.CLIENT):
            pass
    provider.shutdown()
    return [span.name for span in exporter.get_finished_spans()]


def test_by_default_every_message_is_traced_and_no_orphan_client_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = traced(monkeypatch)
    assert names.count("POST /webhooks") == 20 and names.count("INSERT") == 20
    assert "EVALSHA" not in names


def test_otel_traces_sampler_always_off_traces_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert traced(monkeypatch, OTEL_TRACES_SAMPLER="always_off") == []


def test_a_trace_id_ratio_keeps_whole_traces_and_still_no_orphans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = traced(
        monkeypatch, OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.5"
    )
    kept = names.count("POST /webhooks")
    assert 0 < kept < 20  # 20 random trace ids at 0.5: all or none has odds of 2 in a million
    assert names.count("INSERT") == kept and "EVALSHA" not in names
