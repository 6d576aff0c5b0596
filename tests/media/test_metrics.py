"""The media counters, added to Redis by fetch and transcribe, as `GET /metrics` shows them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from zapvet.embedded import ServiceUrls
from zapvet.errors import MediaTooLarge, TranscriptionFailed
from zapvet.media.fetch import fetch_cloud
from zapvet.media.metrics import MediaMetrics
from zapvet.media.transcribe import transcribe
from zapvet.otel.exposition import _from_redis
from zapvet.otel.metrics import key
from zapvet.testing.gateways import FakeCloudAPI
from zapvet.testing.media import png, wav
from zapvet.testing.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def metrics(services: ServiceUrls) -> AsyncIterator[MediaMetrics]:
    client = aioredis.Redis.from_url(services.redis_url)
    namespace = f"test-media-{uuid.uuid4().hex[:8]}"
    try:
        yield MediaMetrics(client, namespace)
    finally:
        await client.delete(key(namespace))
        await client.aclose()


async def _samples(metrics: MediaMetrics) -> dict[tuple[str, tuple[str, ...]], float]:
    families = _from_redis(await metrics.client.hgetall(key(metrics.namespace)))

    class _Collected:
        def collect(self) -> list[object]:
            return list(families)

    registry = CollectorRegistry()
    registry.register(_Collected())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.values()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


async def test_metrics_fetch_counts_each_outcome_per_kind(
    http: httpx.AsyncClient, cloud: FakeCloudAPI, metrics: MediaMetrics
) -> None:
    cloud.add_media("1", png(), "image/png")
    cloud.add_media("2", wav(1.0), "audio/wav")
    fetch = {"graph_url": cloud.base_url, "access_token": cloud.access_token}

    await fetch_cloud(http, **fetch, media_id="1", limit=10**6, kind="image", metrics=metrics)
    with pytest.raises(MediaTooLarge):
        await fetch_cloud(http, **fetch, media_id="2", limit=10, kind="audio", metrics=metrics)

    samples = await _samples(metrics)
    assert samples[("zapvet_media_total", ("image", "ok"))] == 1
    assert samples[("zapvet_media_total", ("audio", "too_large"))] == 1
    assert samples[("zapvet_media_total", ("audio", "ok"))] == 0  # exposed before any
    assert samples[("zapvet_transcription_failures_total", ())] == 0


async def test_metrics_transcribe_adds_seconds_and_failures(
    http: httpx.AsyncClient, openai: FakeOpenAIServer, metrics: MediaMetrics
) -> None:
    call = {"base_url": openai.base_url, "api_key": "sk", "model": "gpt-4o-mini-transcribe"}
    await transcribe(http, **call, data=wav(2.0), mimetype="audio/wav", metrics=metrics)
    await transcribe(http, **call, data=wav(3.0), mimetype="audio/wav", metrics=metrics)
    openai.fail_transcriptions(500)
    with pytest.raises(TranscriptionFailed):
        await transcribe(http, **call, data=wav(), mimetype="audio/wav", metrics=metrics)

    samples = await _samples(metrics)
    assert samples[("zapvet_transcription_seconds_total", ())] == 5.0
    assert samples[("zapvet_transcription_failures_total", ())] == 1
