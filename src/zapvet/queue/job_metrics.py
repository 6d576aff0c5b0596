"""Dramatiq middleware counting jobs and their durations per actor, in the shared Redis hash."""

from __future__ import annotations

import time
from typing import Any

import dramatiq
import redis

from zapvet.otel.metrics import count, observe


class JobMetrics(dramatiq.Middleware):
    """Jobs processed, failed, retried and skipped, and how long each took, per actor."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: Any, message: Any) -> None:
        self._started[message.message_id] = time.perf_counter()

    def after_process_message(
        self,
        broker: Any,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        started = self._started.pop(message.message_id, None)
        actor = message.actor_name
        # Retries has decided by now (this middleware sits before it): failed means for good.
        outcome = "processed" if exception is None else "failed" if message.failed else "retried"
        jobs = ("zapvet_jobs_total", {"actor": actor, "outcome": outcome})
        if started is None:
            count(self.client, self.namespace, *jobs)
            return
        observe(
            self.client,
            self.namespace,
            "zapvet_job_duration_seconds",
            {"actor": actor},
            time.perf_counter() - started,
            counted=jobs,
        )

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self._started.pop(message.message_id, None)
        # The poison guard fails what it skips; other skips (age limit) are just skipped.
        outcome = "failed" if message.failed else "skipped"
        labels = {"actor": message.actor_name, "outcome": outcome}
        count(self.client, self.namespace, "zapvet_jobs_total", labels)
