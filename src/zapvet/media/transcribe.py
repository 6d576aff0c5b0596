"""Speech to text for voice notes, through an OpenAI-compatible `/audio/transcriptions`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.trace import Status, StatusCode

from zapvet.cleaning import clean_text
from zapvet.errors import TranscriptionFailed
from zapvet.media.kinds import base_mime
from zapvet.media.metrics import MediaMetrics
from zapvet.otel.tracing import tracer


@dataclass(frozen=True)
class Transcript:
    """What was said, cleaned; `seconds` of audio when the server reports them."""

    text: str
    seconds: float | None


async def transcribe(
    http: httpx.AsyncClient,
    *,
    base_url: str,
    api_key: str,
    model: str,
    data: bytes,
    mimetype: str,
    filename: str = "audio.ogg",
    language: str = "pt",
    metrics: MediaMetrics | None = None,
) -> Transcript:
    """The transcript of the audio `data`: `POST {base_url}/audio/transcriptions`, multipart.

    Raises:
        TranscriptionFailed: `transient` for 5xx, 408, 429, timeouts and lost connections
            (retry later); not transient for other 4xx and answers without a text.
    """
    attributes: dict[str, Any] = {
        "zapvet.media.mime": base_mime(mimetype),
        "zapvet.media.bytes": len(data),
        "gen_ai.request.model": model,
    }
    with tracer().start_as_current_span(
        "media transcribe", attributes=attributes, record_exception=False
    ) as span:
        try:
            transcript = await _post(
                http, base_url, api_key, model, data, mimetype, filename, language
            )
        except TranscriptionFailed as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__name__)
            if metrics is not None:
                await metrics.transcription_failed()
            raise
        if transcript.seconds is not None:
            span.set_attribute("zapvet.media.seconds", transcript.seconds)
            if metrics is not None:
                await metrics.transcribed(transcript.seconds)
        return transcript


async def _post(
    http: httpx.AsyncClient,
    base_url: str,
    api_key: str,
    model: str,
    data: bytes,
    mimetype: str,
    filename: str,
    language: str,
) -> Transcript:
    url = f"{base_url.rstrip('/')}/audio/transcriptions"
    form = {"model": model, "language": language, "response_format": "json"}
    try:
        response = await http.post(
            url,
            data=form,
            files={"file": (filename, data, mimetype)},
            headers={"Authorization": f"Bearer {api_key}"},
        )
    except httpx.TimeoutException as exc:
        raise TranscriptionFailed(f"timed out ({type(exc).__name__})", transient=True) from None
    except httpx.TransportError as exc:
        raise TranscriptionFailed(
            f"connection failed ({type(exc).__name__})", transient=True
        ) from None
    if response.status_code >= 400:
        status = response.status_code
        transient = status >= 500 or status in {408, 429}
        raise TranscriptionFailed("the server refused", transient=transient, status=status)
    try:
        answer = json.loads(response.content)
    except ValueError:
        raise TranscriptionFailed("the answer is not JSON", transient=False) from None
    text = answer.get("text") if isinstance(answer, dict) else None
    if not isinstance(text, str):
        raise TranscriptionFailed("the answer has no text", transient=False)
    return Transcript(clean_text(text), _seconds(answer))


def _seconds(answer: dict[str, Any]) -> float | None:
    usage = answer.get("usage")
    candidates = [answer.get("duration")]
    if isinstance(usage, dict) and usage.get("type", "duration") == "duration":
        candidates.append(usage.get("seconds"))
    for value in candidates:
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None
