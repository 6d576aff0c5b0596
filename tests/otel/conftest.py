"""Tracing for the tests that look at spans: one provider per test process, switched per test.

A process has one global tracer provider, so the first test that asks for `traced` installs
it with a recording exporter behind zapvet's redacting one; each test then instruments the
libraries (with or without content capture) and uninstruments them when it ends, so the
rest of the suite runs untraced.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from zapvet.config import load_settings
from zapvet.otel.tracing import (
    Telemetry,
    instrument_libraries,
    set_content_capture,
    setup_tracing,
    uninstrument_libraries,
)


class Recorder(SpanExporter):
    """Keeps exported spans while switched on; drops them otherwise."""

    def __init__(self) -> None:
        self._spans: list[ReadableSpan] = []
        self._lock = threading.Lock()
        self.active = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.active:
            with self._lock:
                self._spans.extend(spans)
        return SpanExportResult.SUCCESS

    @property
    def spans(self) -> list[ReadableSpan]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()


@dataclass
class Traced:
    telemetry: Telemetry
    recorder: Recorder

    @property
    def spans(self) -> list[ReadableSpan]:
        return self.recorder.spans


_process: Traced | None = None


def _install() -> Traced:
    global _process
    if _process is None:
        recorder = Recorder()
        telemetry = setup_tracing(
            load_settings(), "zapvet-test", exporter=recorder, synchronous=True
        )
        assert telemetry.provider is not None and telemetry.exporter is not None
        _process = Traced(telemetry, recorder)
    return _process


@pytest.fixture
def capture() -> bool:
    """Whether content capture (ZAPVET_CAPTURE_CONTENT) is on for the test."""
    return False


@pytest.fixture
def traced(capture: bool) -> Iterator[Traced]:
    process = _install()
    assert process.telemetry.provider is not None and process.telemetry.exporter is not None
    process.telemetry.exporter.capture = capture
    instrument_libraries(process.telemetry.provider, capture=capture)
    process.recorder.clear()
    process.recorder.active = True
    try:
        yield process
    finally:
        process.recorder.active = False
        process.recorder.clear()
        uninstrument_libraries()
        process.telemetry.exporter.capture = False
        set_content_capture(False)


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id),
        key=lambda s: s.start_time or 0,
    )


def only(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{len(found)} spans named {name!r}: {[s.name for s in spans]}"
    return found[0]
