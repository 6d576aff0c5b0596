"""Downloading a message's media from Evolution API or the WhatsApp Cloud API (DESIGN §5).

Never more than `limit` + 1 bytes are held: a size announced over the limit is refused before
any download, and a body that runs past it is cut off there. What comes back is checked
(base64 that decodes, a sha256 that matches) so a broken file never reaches the model.
Failures say whether to retry: `MediaTransient` (5xx, 429, timeouts, lost connections) or
`MediaUnavailable` (4xx, expired URL, wrong hash); `MediaTooLarge` for a file over its limit.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.trace import Span, Status, StatusCode

from zapvet.errors import MediaError, MediaTooLarge, MediaTransient, MediaUnavailable
from zapvet.media.kinds import base_mime
from zapvet.media.metrics import MediaMetrics, Outcome
from zapvet.otel.tracing import tracer

#: Statuses after which the same request may succeed later; every other 4xx is final.
_RETRIABLE_4XX = frozenset({408, 425, 429})
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
#: Room for the JSON around Evolution's base64 (mimetype, fileName, caption, size).
_ENVELOPE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Fetched:
    """A downloaded file: its bytes, its type as the provider said, and its sha256 (hex)."""

    data: bytes
    mimetype: str
    sha256: str


async def fetch_evolution(
    http: httpx.AsyncClient,
    *,
    api_url: str,
    instance: str,
    api_key: str,
    key: dict[str, Any],
    message: dict[str, Any],
    limit: int,
    inline_base64: str | None = None,
    kind: str | None = None,
    metrics: MediaMetrics | None = None,
) -> Fetched:
    """The media of an Evolution `messages.upsert` (`data.key`, `data.message`).

    `inline_base64` (the webhook's `message.base64`) is used when it decodes; otherwise
    `POST {api_url}/chat/getBase64FromMediaMessage/{instance}` asks Evolution for it.

    Raises:
        MediaTooLarge: the payload's `fileLength` or the file itself is over `limit`.
        MediaUnavailable: Evolution refused (4xx) or answered something that is not a file.
        MediaTransient: 5xx, 429, a timeout or a lost connection.
    """
    announced = _payload_mime(message)
    with _download_span("evolution", kind) as span:
        async with _counted(metrics, kind):
            size = _file_length(message)
            if size is not None and size > limit:
                raise MediaTooLarge(size, limit)
            data = _decode(inline_base64) if inline_base64 else None
            mimetype = announced
            if data is None:
                url = f"{api_url.rstrip('/')}/chat/getBase64FromMediaMessage/{instance}"
                body = {"message": {"key": key, "message": message}, "convertToMp4": False}
                request = http.build_request("POST", url, json=body, headers={"apikey": api_key})
                # Base64 is 4/3 of the file: cap the answer at what a file of `limit` needs.
                raw = await _capped(http, request, limit * 4 // 3 + 4 + _ENVELOPE_BYTES, limit)
                answer = _json_object(raw)
                data = _decode(answer.get("base64"))
                if data is None:
                    raise MediaUnavailable("Evolution answered no decodable base64")
                mimetype = str(answer.get("mimetype") or announced)
            if len(data) > limit:
                raise MediaTooLarge(len(data), limit)
            return _done(span, data, mimetype)


async def fetch_cloud(
    http: httpx.AsyncClient,
    *,
    graph_url: str,
    access_token: str,
    media_id: str,
    limit: int,
    expected_sha256: str | None = None,
    kind: str | None = None,
    metrics: MediaMetrics | None = None,
) -> Fetched:
    """The media `media_id` of a Cloud API webhook: its URL from `GET {graph_url}/{media_id}`,
    then the bytes from that URL, both with the Bearer token.

    `expected_sha256` (the webhook's, base64) and the answer's `sha256` (hex, per Meta's
    docs) may each be hex or base64; the bytes must match both.

    Raises:
        MediaTooLarge: `file_size` or the download is over `limit` (nothing past it is read).
        MediaUnavailable: 4xx (unknown id, bad token, expired URL) or a sha256 mismatch.
        MediaTransient: 5xx, 429, a timeout or a lost connection.
    """
    headers = {"Authorization": f"Bearer {access_token}"}
    with _download_span("cloud", kind) as span:
        async with _counted(metrics, kind):
            lookup = http.build_request(
                "GET", f"{graph_url.rstrip('/')}/{media_id}", headers=headers
            )
            answer = _json_object(await _capped(http, lookup, _ENVELOPE_BYTES, None))
            url = answer.get("url")
            if not isinstance(url, str) or not url:
                raise MediaUnavailable("the Graph API answered no media URL")
            size = _int(answer.get("file_size"))
            if size is not None and size > limit:
                raise MediaTooLarge(size, limit)
            data = await _capped(
                http, http.build_request("GET", url, headers=headers), limit, limit
            )
            for expected in (expected_sha256, answer.get("sha256")):
                if isinstance(expected, str) and not _matches(data, expected):
                    raise MediaUnavailable("the file's sha256 does not match")
            mimetype = str(answer.get("mime_type") or "application/octet-stream")
            return _done(span, data, mimetype)


@contextlib.contextmanager
def _download_span(provider: str, kind: str | None) -> Iterator[Span]:
    # Never the URL (it can carry tokens), the bytes or the chat: only what and how much.
    attributes = {"zapvet.media.provider": provider}
    if kind:
        attributes["zapvet.media.kind"] = kind
    with tracer().start_as_current_span(
        "media download", attributes=attributes, record_exception=False
    ) as span:
        try:
            yield span
        except MediaError as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__name__)
            raise


@contextlib.asynccontextmanager
async def _counted(metrics: MediaMetrics | None, kind: str | None) -> AsyncIterator[None]:
    outcome: Outcome | None = None
    try:
        yield
        outcome = "ok"
    except MediaTooLarge:
        outcome = "too_large"
        raise
    except MediaTransient:
        outcome = "transient"
        raise
    except MediaUnavailable:
        outcome = "unavailable"
        raise
    finally:
        if metrics is not None and outcome is not None:
            await metrics.fetched(kind or "unknown", outcome)


def _done(span: Span, data: bytes, mimetype: str) -> Fetched:
    span.set_attribute("zapvet.media.mime", base_mime(mimetype))
    span.set_attribute("zapvet.media.bytes", len(data))
    return Fetched(data, mimetype, hashlib.sha256(data).hexdigest())


async def _capped(
    http: httpx.AsyncClient, request: httpx.Request, cap: int, limit: int | None
) -> bytes:
    """The body of `request`'s answer, reading at most `cap` + 1 bytes.

    Raises:
        MediaTooLarge: the body runs past `cap` (reported against `limit`, if given).
        MediaUnavailable, MediaTransient: as the status or the failure says.
    """
    try:
        response = await http.send(request, stream=True)
        try:
            if response.status_code >= 400:
                raise _status_error(response.status_code)
            declared = _int(response.headers.get("content-length"))
            if limit is not None and declared is not None and declared > cap:
                raise MediaTooLarge(declared, limit)
            chunks: list[bytes] = []
            read = 0
            async for chunk in response.aiter_bytes():
                kept = chunk[: cap + 1 - read]  # the byte past the cap proves the overrun
                chunks.append(kept)
                read += len(kept)
                if read > cap:
                    if limit is None:
                        raise MediaUnavailable("the answer is larger than any media answer")
                    raise MediaTooLarge(read, limit)
            return b"".join(chunks)
        finally:
            await response.aclose()
    except httpx.TimeoutException as exc:
        raise MediaTransient(f"timed out ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise MediaTransient(f"connection failed ({type(exc).__name__})") from None


def _status_error(status: int) -> MediaError:
    if status >= 500 or status in _RETRIABLE_4XX:
        return MediaTransient("the provider failed", status=status)
    return MediaUnavailable("the provider refused the media", status=status)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(raw)
    except ValueError:
        raise MediaUnavailable("the provider's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise MediaUnavailable("the provider's answer is not a JSON object")
    return answer


def _decode(encoded: Any) -> bytes | None:
    """Base64 (standard, with or without a `data:` prefix) decoded, or None if it is not."""
    if not isinstance(encoded, str) or not encoded.strip():
        return None
    text = encoded.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _digest(encoded: str) -> bytes | None:
    """A sha256 given as hex or base64 (either alphabet), or None if it is neither."""
    text = encoded.strip()
    if _HEX_SHA256.fullmatch(text):
        return bytes.fromhex(text)
    padded = text + "=" * (-len(text) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            digest = decode(padded)
        except (binascii.Error, ValueError):
            continue
        if len(digest) == 32:
            return digest
    return None


def _matches(data: bytes, expected: str) -> bool:
    digest = _digest(expected)
    return digest is not None and digest == hashlib.sha256(data).digest()


def _int(value: Any) -> int | None:
    """A size as Evolution or Meta write it: int, numeric string, or protobuf Long dict."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, dict):
        low, high = value.get("low"), value.get("high", 0)
        if isinstance(low, int) and isinstance(high, int):
            return (high << 32) + (low & 0xFFFFFFFF)
    return None


def _media_content(message: dict[str, Any]) -> dict[str, Any] | None:
    """The `<kind>Message` object inside an Evolution message, through caption wrappers."""
    for name, value in message.items():
        if not isinstance(value, dict):
            continue
        if name.endswith("Message") and "mimetype" in value:
            return value
        inner = value.get("message")
        if isinstance(inner, dict):
            found = _media_content(inner)
            if found is not None:
                return found
    return None


def _payload_mime(message: dict[str, Any]) -> str:
    content = _media_content(message)
    mimetype = content.get("mimetype") if content else None
    return mimetype if isinstance(mimetype, str) and mimetype else "application/octet-stream"


def _file_length(message: dict[str, Any]) -> int | None:
    content = _media_content(message)
    return _int(content.get("fileLength")) if content else None
