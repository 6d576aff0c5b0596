"""The media counters (docs/metrics.md), added to the shared Redis hash like every other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from zapvet.otel.metrics import aadd, acount

Outcome = Literal["ok", "unavailable", "transient", "too_large"]


@dataclass(frozen=True)
class MediaMetrics:
    """Where fetch and transcribe count what they did; built once per worker process."""

    client: aioredis.Redis
    namespace: str

    async def fetched(self, kind: str, outcome: Outcome) -> None:
        labels = {"kind": kind, "outcome": outcome}
        await acount(self.client, self.namespace, "zapvet_media_total", labels)

    async def transcribed(self, seconds: float) -> None:
        await aadd(self.client, self.namespace, "zapvet_transcription_seconds_total", {}, seconds)

    async def transcription_failed(self) -> None:
        await acount(self.client, self.namespace, "zapvet_transcription_failures_total", {})
