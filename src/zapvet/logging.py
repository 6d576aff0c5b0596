"""Log setup: one JSON line per event (pino-style fields) or readable console lines.

structlog renders both structlog calls and stdlib records (alembic, dramatiq, httpx) the
same way. Entrypoints call `setup_logging(settings)` once.
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

from zapvet.config import Settings

_PINO_LEVELS = {"debug": 20, "info": 30, "warning": 40, "error": 50, "critical": 60}
_HOSTNAME = socket.gethostname()


def _pino(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    level = str(event.pop("level", method))
    event["level"] = _PINO_LEVELS.get(level, 30)
    event["time"] = int(time.time() * 1000)
    event["pid"] = os.getpid()
    event["hostname"] = _HOSTNAME
    event["msg"] = event.pop("event", "")
    return event


def setup_logging(settings: Settings, *, level: int = logging.INFO) -> None:
    """Route structlog and stdlib logging to stderr in the configured format."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
    ]
    renderer: list[Any]
    if settings.effective_log_format == "json":
        renderer = [
            _pino,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
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


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
