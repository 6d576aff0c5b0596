"""Log setup: one JSON line per event (pino-style fields) or readable console lines.

structlog renders both structlog calls and stdlib records (alembic, dramatiq, httpx) the
same way, each with the current trace_id and span_id. Jobs bind the seed worker's fields
(jobId, organizationId, type, agentType, contactId, conversationId) as context, cleared
between jobs. Every line passes `redact` last: by default no message text, phone number or
contact name is written (`from` and `messageContent` are dropped, phone numbers become
`<phone>`; dates and ids stay); ZAPVET_CAPTURE_CONTENT=true keeps them. Secrets are redacted
always.
Entrypoints call `setup_logging(settings)` once.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

from zapvet.config import Settings
from zapvet.otel.redaction import CONTENT_KEYS, scrub_attributes

_PINO_LEVELS = {"debug": 20, "info": 30, "warning": 40, "error": 50, "critical": 60}
_HOSTNAME = socket.gethostname()
#: Fields the renderer adds or that carry no personal data: left as they are.
_STRUCTURAL = frozenset({"level", "time", "pid", "hostname", "logger", "trace_id", "span_id"})

Event = MutableMapping[str, Any]


def _pino(_: Any, method: str, event: Event) -> Event:
    level = str(event.pop("level", method))
    event["level"] = _PINO_LEVELS.get(level, 30)
    event["time"] = int(time.time() * 1000)
    event["pid"] = os.getpid()
    event["hostname"] = _HOSTNAME
    event["msg"] = event.pop("event", "")
    return event


def _otel_ids(_: Any, __: str, event: Event) -> Event:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = f"{context.trace_id:032x}"
        event["span_id"] = f"{context.span_id:016x}"
    return event


class _Redact:
    """The last processor before rendering: personal data out unless capture is on."""

    def __init__(self, capture: bool) -> None:
        self.capture = capture

    def __call__(self, _: Any, __: str, event: Event) -> Event:
        if not self.capture:
            for key in CONTENT_KEYS & event.keys():
                del event[key]
        loose = {k: v for k, v in event.items() if k not in _STRUCTURAL}
        event.update(scrub_attributes(loose, capture=self.capture))
        return event


def setup_logging(settings: Settings, *, level: int = logging.INFO) -> None:
    """Route structlog and stdlib logging to stderr in the configured format."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _otel_ids,
    ]
    redact = _Redact(settings.capture_content)
    renderer: list[Any]
    if settings.effective_log_format == "json":
        renderer = [
            structlog.processors.format_exc_info,
            redact,
            _pino,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
    else:
        renderer = [redact, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    logging.basicConfig(handlers=[handler], level=level, force=True)


def bind_job(job_id: str) -> None:
    """Start a job's log context from nothing: worker threads are reused across jobs."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(jobId=job_id)


def bind(**fields: Any) -> None:
    """Add fields (organizationId, conversationId, …) to every line of the current job."""
    structlog.contextvars.bind_contextvars(**fields)


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
