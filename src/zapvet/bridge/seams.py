"""What the bridge is handed by the wiring (`runtime.py`): the queue it asks for drains on,
and readers for the queue's figures, so that the bridge never imports the queue or the agents.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class DrainQueue(Protocol):
    """The queue as the bridge sees it: ask for a drain of one conversation, later, unless
    one is queued for it already (`queue.fairness`); True if one was enqueued."""

    def request_drain(
        self, conversation_id: int, *, organization_id: int, delay_ms: int = 0
    ) -> bool: ...


#: `GET /stats`: the queue's depth and alerts as JSON (`zapvet stats --json`'s figures).
StatsReader = Callable[[], Awaitable[dict[str, Any]]]

#: `GET /metrics`: the Prometheus text exposition of every zapvet metric.
MetricsReader = Callable[[], Awaitable[bytes]]

#: `GET /calendar/{token}.ics`: the feed's iCalendar bytes, or None for an unknown token.
CalendarReader = Callable[[str], Awaitable[bytes | None]]
