"""Dramatiq middleware that carries the trace across the queue (no maintained one exists).

`before_enqueue` opens a PRODUCER span and stores the W3C context in the message options;
the worker opens a CONSUMER span as its child (Phoenix drops span links, so parenthood is
what keeps webhook → job in one trace) and makes it current for the job. Retries and
delayed re-enqueues keep the original context. Spans are flushed when the worker stops:
a forked worker exits through os._exit and would lose its batch otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from opentelemetry import context, propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from zapvet.otel.tracing import flush_spans, tracer

OPTION = "otel"


class TracePropagation(dramatiq.Middleware):
    def __init__(self, flush: Callable[[], None] = flush_spans) -> None:
        self._flush = flush
        self._local = threading.local()

    def before_enqueue(self, broker: Any, message: Any, delay: int | None) -> None:
        if OPTION in message.options:
            return  # a retry or a delayed message coming due: keep the first context
        queue = message.queue_name.removesuffix(".DQ")
        with tracer().start_as_current_span(
            f"send {queue}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "dramatiq",
                "messaging.operation.type": "send",
                "messaging.destination.name": queue,
                "messaging.message.id": message.message_id,
                "dramatiq.actor": message.actor_name,
                "dramatiq.delay_ms": delay or 0,
            },
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            message.options[OPTION] = carrier

    def before_process_message(self, broker: Any, message: Any) -> None:
        parent = propagate.extract(message.options.get(OPTION) or {})
        parent_span = trace.get_current_span(parent).get_span_context()
        span = tracer().start_span(
            f"process {message.queue_name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=[Link(parent_span)] if parent_span.is_valid else None,
            attributes={
                "messaging.system": "dramatiq",
                "messaging.operation.type": "process",
                "messaging.destination.name": message.queue_name,
                "messaging.message.id": message.message_id,
                "dramatiq.actor": message.actor_name,
                "dramatiq.retries": message.options.get("retries", 0),
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        stack = getattr(self._local, "stack", [])
        stack.append((span, token))
        self._local.stack = stack

    def _end(self, exception: BaseException | None = None) -> None:
        stack = getattr(self._local, "stack", None)
        if not stack:
            return
        span, token = stack.pop()
        if exception is not None:
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
            span.set_attribute("error.type", type(exception).__qualname__)
        span.end()
        context.detach(token)

    def after_process_message(
        self,
        broker: Any,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._end(exception)

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self._end()

    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._flush()
