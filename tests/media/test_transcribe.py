"""`transcribe` against the fake OpenAI server's `/audio/transcriptions`, over loopback."""

from __future__ import annotations

import httpx
import pytest

from zapvet.errors import TranscriptionFailed
from zapvet.media.transcribe import transcribe
from zapvet.testing.media import sha256, wav
from zapvet.testing.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.anyio


async def _transcribe(
    http: httpx.AsyncClient, fake: FakeOpenAIServer, data: bytes, mimetype: str = "audio/wav"
) -> str:
    transcript = await transcribe(
        http,
        base_url=fake.base_url,
        api_key="sk-test",
        model="gpt-4o-mini-transcribe",
        data=data,
        mimetype=mimetype,
        filename="nota.wav",
    )
    return transcript.text


async def test_transcribe_sends_the_exact_bytes_model_and_language(
    http: httpx.AsyncClient, openai: FakeOpenAIServer
) -> None:
    audio = wav(2.0, tone_hz=330)
    openai.transcripts[sha256(audio)] = "Quero marcar banho pro Thor amanhã às 10h."

    transcript = await transcribe(
        http,
        base_url=openai.base_url,
        api_key="sk-test",
        model="gpt-4o-mini-transcribe",
        data=audio,
        mimetype="audio/wav",
        filename="nota.wav",
    )

    assert transcript.text == "Quero marcar banho pro Thor amanhã às 10h."
    assert transcript.seconds == 2.0
    (request,) = openai.transcriptions
    assert request.sha256 == sha256(audio) and request.data == audio
    assert (request.model, request.language) == ("gpt-4o-mini-transcribe", "pt")
    assert (request.filename, request.content_type) == ("nota.wav", "audio/wav")
    assert request.response_format == "json"


async def test_transcribe_reads_the_duration_rounded_up_by_the_server(
    http: httpx.AsyncClient, openai: FakeOpenAIServer
) -> None:
    transcript = await transcribe(
        http,
        base_url=openai.base_url,
        api_key="sk-test",
        model="gpt-4o-mini-transcribe",
        data=wav(2.2),
        mimetype="audio/wav",
    )
    assert transcript.seconds == 3.0


async def test_transcribe_without_usage_has_no_seconds(
    http: httpx.AsyncClient, openai: FakeOpenAIServer
) -> None:
    ogg = b"OggS\x00\x02" + bytes(200)  # not a WAV: the fake reports no duration
    openai.default_transcript = "  Oi\u202e, tudo bem?  "

    transcript = await transcribe(
        http,
        base_url=openai.base_url,
        api_key="sk-test",
        model="whisper-1",
        data=ogg,
        mimetype="audio/ogg; codecs=opus",
    )

    assert (transcript.text, transcript.seconds) == ("Oi, tudo bem?", None)  # cleaned
    (request,) = openai.transcriptions
    assert (request.filename, request.content_type) == ("audio.ogg", "audio/ogg; codecs=opus")


@pytest.mark.parametrize(("status", "transient"), [(500, True), (503, True), (429, True)])
async def test_transcribe_server_failures_are_transient(
    http: httpx.AsyncClient, openai: FakeOpenAIServer, status: int, transient: bool
) -> None:
    openai.fail_transcriptions(status)

    with pytest.raises(TranscriptionFailed) as raised:
        await _transcribe(http, openai, wav())

    assert (raised.value.transient, raised.value.status) == (transient, status)
    assert await _transcribe(http, openai, wav()) == openai.default_transcript  # once only


@pytest.mark.parametrize("status", [400, 401, 413])
async def test_transcribe_refusals_are_not_transient(
    http: httpx.AsyncClient, openai: FakeOpenAIServer, status: int
) -> None:
    openai.fail_transcriptions(status, times=2)

    for _ in range(2):
        with pytest.raises(TranscriptionFailed) as raised:
            await _transcribe(http, openai, wav())
        assert (raised.value.transient, raised.value.status) == (False, status)


async def test_transcribe_unreachable_server_is_transient(http: httpx.AsyncClient) -> None:
    fake = FakeOpenAIServer()
    with fake:
        base_url = fake.base_url
    with pytest.raises(TranscriptionFailed) as raised:
        await transcribe(
            http,
            base_url=base_url,
            api_key="sk-test",
            model="gpt-4o-mini-transcribe",
            data=wav(),
            mimetype="audio/wav",
        )
    assert raised.value.transient and raised.value.status is None
