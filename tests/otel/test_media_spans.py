"""The `media download` and `media transcribe` spans say what and how much, never the
content, the URL (it can carry a token), the credentials or the chat."""

from __future__ import annotations

import json

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from tests.otel.conftest import Traced, only
from zapvet.errors import MediaUnavailable
from zapvet.media.fetch import fetch_cloud, fetch_evolution
from zapvet.media.transcribe import transcribe
from zapvet.testing.gateways import FakeCloudAPI, FakeEvolutionAPI
from zapvet.testing.media import png, wav
from zapvet.testing.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.anyio

PHONE = "5511987654321"
SPOKEN = "Meu cachorro Bartolomeu vomitou sangue"


def _dump(span: ReadableSpan) -> str:
    return json.dumps(dict(span.attributes or {}), default=str)


async def test_media_download_spans_carry_kind_mime_bytes_and_provider_only(
    traced: Traced,
) -> None:
    image = png(16, 16)
    with FakeEvolutionAPI() as evolution, FakeCloudAPI() as cloud:
        payload = evolution.incoming_media(PHONE, "image", image, mimetype="image/png")
        cloud.add_media("4242", image, "image/png")
        async with httpx.AsyncClient() as http:
            await fetch_evolution(
                http,
                api_url=evolution.base_url,
                instance="petshop-centro",
                api_key=evolution.api_key,
                key=payload["data"]["key"],
                message=payload["data"]["message"],
                limit=10**6,
                kind="image",
            )
            await fetch_cloud(
                http,
                graph_url=cloud.base_url,
                access_token=cloud.access_token,
                media_id="4242",
                limit=10**6,
                kind="image",
            )
            cloud.expire_media("4242")
            with pytest.raises(MediaUnavailable):
                await fetch_cloud(
                    http,
                    graph_url=cloud.base_url,
                    access_token=cloud.access_token,
                    media_id="4242",
                    limit=10**6,
                    kind="image",
                )

    downloads = [s for s in traced.spans if s.name == "media download"]
    assert [dict(s.attributes or {}) for s in downloads[:2]] == [
        {
            "zapvet.media.provider": provider,
            "zapvet.media.kind": "image",
            "zapvet.media.mime": "image/png",
            "zapvet.media.bytes": len(image),
        }
        for provider in ("evolution", "cloud")
    ]
    failed = downloads[2]
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "MediaUnavailable"
    for span in downloads:
        dumped = _dump(span)
        for secret in (PHONE, evolution.api_key, cloud.access_token, "127.0.0.1", "4242"):
            assert secret not in dumped


async def test_media_transcribe_span_has_model_size_and_duration_not_the_words(
    traced: Traced,
) -> None:
    audio = wav(2.0)
    with FakeOpenAIServer(default_transcript=SPOKEN) as openai:
        async with httpx.AsyncClient() as http:
            transcript = await transcribe(
                http,
                base_url=openai.base_url,
                api_key="sk-media-Zk81",
                model="gpt-4o-mini-transcribe",
                data=audio,
                mimetype="audio/wav",
            )
    assert transcript.text == SPOKEN

    span = only(traced.spans, "media transcribe")
    assert dict(span.attributes or {}) == {
        "zapvet.media.mime": "audio/wav",
        "zapvet.media.bytes": len(audio),
        "zapvet.media.seconds": 2.0,
        "gen_ai.request.model": "gpt-4o-mini-transcribe",
    }
    for span in traced.spans:
        assert "Bartolomeu" not in _dump(span) and "sk-media-Zk81" not in _dump(span)
