"""The spans of one process, kept in memory and printed as a tree (`zapvet demo`).

`SpanRecorder` keeps each ended span's name, ids, times and `db.system`, never attributes or
events, so nothing it holds can carry content; `render_trace` prints one trace indented by
parent with durations, database and Redis calls in a row folded into one line.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from zapvet.config import Settings
from zapvet.otel.redaction import scrub_text
from zapvet.otel.tracing import build_sampler, instrument_libraries


@dataclass(frozen=True)
class SpanRecord:
    """What the demo keeps of a span: name, ids, times and `db.system`; no content."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    start_ns: int
    end_ns: int
    #: `db.system` of a database or Redis call (such calls in a row print as one line).
    system: str | None = None

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class SpanRecorder(SpanProcessor):
    """Keeps every span this process ends, and counts the spans still open in each trace."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ended: list[SpanRecord] = []
        self._open: Counter[int] = Counter()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        with self._lock:
            self._open[span.context.trace_id] += 1

    def on_end(self, span: ReadableSpan) -> None:
        context, parent = span.context, span.parent
        assert context is not None
        system = (span.attributes or {}).get("db.system")
        record = SpanRecord(
            name=span.name,
            trace_id=context.trace_id,
            span_id=context.span_id,
            parent_id=parent.span_id if parent is not None else None,
            start_ns=span.start_time or 0,
            end_ns=span.end_time or span.start_time or 0,
            system=str(system) if system else None,
        )
        with self._lock:
            self._open[record.trace_id] -= 1
            self._ended.append(record)

    @property
    def spans(self) -> list[SpanRecord]:
        with self._lock:
            return list(self._ended)

    def open_in(self, trace_id: int) -> int:
        with self._lock:
            return self._open[trace_id]


@contextmanager
def recording_spans(settings: Settings) -> Iterator[SpanRecorder | None]:
    """A `SpanRecorder` on this process's tracer provider (None if OTEL_SDK_DISABLED).

    A provider the OTEL_* variables configured (or Phoenix) keeps exporting as before; with
    none, the demo installs one of its own that records in memory and exports nowhere.
    """
    if settings.otel_sdk_disabled:
        yield None
        return
    provider = trace.get_tracer_provider()
    own = None
    if not isinstance(provider, TracerProvider):
        provider = own = TracerProvider(
            resource=Resource.create({"service.name": "zapvet"}), sampler=build_sampler()
        )
        trace.set_tracer_provider(own)
        instrument_libraries(own, capture=settings.capture_content)
    recorder = SpanRecorder()
    provider.add_span_processor(recorder)
    try:
        yield recorder
    finally:
        if own is not None:
            own.shutdown()


def roots(spans: list[SpanRecord]) -> list[SpanRecord]:
    """Spans whose parent was not recorded (the webhook continues the caller's context)."""
    ids = {span.span_id for span in spans}
    found = [span for span in spans if span.parent_id is None or span.parent_id not in ids]
    return sorted(found, key=lambda span: span.start_ns)


def render_trace(spans: list[SpanRecord], root: SpanRecord) -> list[str]:
    """`root`'s tree, children indented under their parent in start order, with durations.

    Database and Redis calls in a row under one parent become one line (`postgresql ×3:
    SELECT ×2, UPDATE`). Only span names are printed, phone-like digits masked even there.
    """
    children: dict[int, list[SpanRecord]] = {}
    for span in sorted(spans, key=lambda span: span.start_ns):
        if span.trace_id == root.trace_id and span.parent_id is not None:
            children.setdefault(span.parent_id, []).append(span)
    lines: list[str] = []

    def walk(span: SpanRecord, depth: int) -> None:
        lines.append(f"{'  ' * depth}{scrub_text(span.name, capture=False)}  {span.ms:.1f} ms")
        kids = children.get(span.span_id, [])
        leaf = {id(kid): kid.system is not None and kid.span_id not in children for kid in kids}
        for (system, _), run in groupby(kids, key=lambda kid: (kid.system, leaf[id(kid)])):
            calls = list(run)
            if system is None or not leaf[id(calls[0])]:
                for kid in calls:
                    walk(kid, depth + 1)
                continue
            names = Counter(scrub_text(call.name, capture=False) for call in calls)
            listed = ", ".join(n if k == 1 else f"{n} ×{k}" for n, k in names.items())
            total = sum(call.ms for call in calls)
            head = system if len(calls) == 1 else f"{system} ×{len(calls)}:"
            lines.append(f"{'  ' * (depth + 1)}{head} {listed}  {total:.1f} ms")

    walk(root, 0)
    return lines
