"""Before a turn: turn the batch's voice notes, photos and documents into what the agent reads.

The bridge stored what a media message is (kind, MIME type, size, sha256, where to fetch it);
here, in the worker and never in the webhook request, each one is made usable once:

- a voice note or audio file is fetched and transcribed (or Evolution's own `speechToText`
  is taken); the transcript is stored on the row and is the customer's words from then on;
- a photo is fetched for this turn only, to be shown to the model as an image; its bytes
  are never stored, so later turns see a placeholder;
- a PDF is fetched and its text extracted (bounded), stored on the row;
- anything over its size limit, a video too long or an audio too long to transcribe is
  marked `too_large`, and a file outside the allow-list is acknowledged without being read.

A fetch or transcription that fails for a reason that may pass (a 5xx, a timeout) is tried
again after 2, 4 and 8 seconds, as sends are, by deferring the drain; the attempts are counted
on the row, so neither a crash nor the sweeper resets them. After that, or at once for a
failure that will not pass (404, expired, unreadable), the row is marked `failed` with the
reason: the message is kept, and the drain answers what it can.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlmodel import col, select, update

from zapvet.config import Settings
from zapvet.errors import (
    MediaTooLarge,
    MediaTransient,
    MediaUnavailable,
    TranscriptionFailed,
    UnreadableDocument,
)
from zapvet.logging import get_logger
from zapvet.media import stash
from zapvet.media.documents import pdf_text
from zapvet.media.fetch import Fetched, fetch_cloud, fetch_evolution
from zapvet.media.kinds import allowed, base_mime
from zapvet.media.limits import MediaLimits
from zapvet.media.metrics import MediaMetrics
from zapvet.media.transcribe import transcribe
from zapvet.models import AISettings, Message, WhatsAppInstance

log = get_logger("zapvet.media")

#: Seconds before each retry of a fetch or transcription that failed for a passing reason.
RETRY_DELAYS_S = (2, 4, 8)
#: Kinds whose bytes a turn needs.
FETCHED = ("audio", "image", "document")
#: Kinds this step looks at (a video is never fetched, but may be over its limit).
MEDIA_KINDS = (*FETCHED, "video")
#: Final states of a row's media: `ready` is usable; `unsupported` is a type outside the
#: allow-list, acknowledged and never read.
DONE = ("ready", "failed", "too_large", "unsupported")

#: What the customer hears when nothing in the batch could be used, by kind and state.
COULD_NOT = {
    "audio": "Não consegui ouvir seu áudio, pode me escrever?",
    "image": "Não consegui abrir sua imagem. Pode me escrever o que precisa?",
    "document": "Não consegui abrir seu documento. Pode me escrever o que precisa?",
    "video": "Não consigo assistir vídeos por aqui. Pode me escrever o que precisa?",
}
TOO_LARGE = {
    "audio": "Seu áudio é longo demais para eu ouvir por aqui. Pode me escrever o que precisa?",
    "image": "Essa imagem é grande demais para eu abrir por aqui. Pode me escrever o que precisa?",
    "document": "Esse arquivo é grande demais para eu receber por aqui. "
    "Pode me escrever o que precisa?",
    "video": "Esse vídeo é grande demais e eu não consigo assistir vídeos por aqui. "
    "Pode me escrever o que precisa ou mandar uma foto?",
}


@dataclass(frozen=True)
class MediaSetup:
    """How a worker reaches the transcription endpoint, its limits, and the webhook stash."""

    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str | None = None
    transcribe_model: str = "gpt-4o-mini-transcribe"
    limits: MediaLimits = field(default_factory=MediaLimits)
    #: Redis (asyncio) holding media bytes that came inside webhooks; None: always fetch.
    redis: Any = None
    namespace: str = "zapvet"  # the queue's Redis namespace (ZAPVET_QUEUE_NAMESPACE)
    #: Seconds before each new try of a fetch or transcription (as sends: 2, 4, 8).
    retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S
    #: Seconds one download or transcription may take (a long voice note takes a while).
    timeout_s: float = 30.0

    @classmethod
    def from_settings(
        cls, settings: Settings, *, redis: Any = None, namespace: str | None = None
    ) -> MediaSetup:
        key = settings.openai_api_key
        return cls(
            openai_base_url=settings.openai_base_url or cls.openai_base_url,
            openai_api_key=key.get_secret_value() if key is not None else None,
            transcribe_model=settings.transcribe_model,
            limits=MediaLimits.from_settings(settings),
            redis=redis,
            namespace=namespace or settings.queue_namespace,
            timeout_s=float(settings.media_timeout_seconds),
        )

    def client(self) -> httpx.AsyncClient:
        """The HTTP client for media: its own timeout, longer than a send's."""
        return httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s))


@dataclass
class MediaTurn:
    """What the batch's media give the turn."""

    #: Row id → (MIME type, bytes) of the photos to show the model in this turn.
    images: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    #: Seconds of audio transcribed for this batch (for cost accounting).
    audio_seconds: float = 0.0
    #: Why some media could not be used (recorded as an error interaction).
    failures: list[str] = field(default_factory=list)
    #: Try the batch again after this many milliseconds (a passing failure).
    retry_in_ms: int | None = None
    #: The batch holds something the agent can answer.
    usable: bool = True
    #: When nothing is usable: the reply to send instead of running the agent.
    notice: str | None = None

    @property
    def trouble(self) -> str | None:
        """The error recorded (an `ai_interactions` row) when some media could not be used."""
        return "media could not be used: " + "; ".join(self.failures) if self.failures else None


def media_of(row: Message) -> dict[str, Any]:
    return dict((row.meta or {}).get("media") or {})


async def prepare_media(
    sessions: Any,
    http: httpx.AsyncClient,
    setup: MediaSetup,
    ids: list[int],
    settings: AISettings | None,
) -> MediaTurn:
    """Make the pending rows `ids` usable; see the module's docstring."""
    async with sessions() as session:
        rows = list(
            await session.exec(
                select(Message).where(col(Message.id).in_(ids)).order_by(col(Message.id))
            )
        )
        instances = {
            i.id: i
            for i in await session.exec(
                select(WhatsAppInstance).where(
                    col(WhatsAppInstance.id).in_({r.instance_id for r in rows if r.instance_id})
                )
            )
        }
    turn = MediaTurn()
    vision = settings.vision if settings is not None else True
    model = (settings.transcribe_model if settings else None) or setup.transcribe_model
    for row in rows:
        if row.message_type not in MEDIA_KINDS:
            continue
        media = media_of(row)
        if media.get("state") not in DONE or (
            row.message_type == "image" and media.get("state") == "ready" and vision
        ):
            instance = instances.get(row.instance_id)
            media, data = await _prepare_row(http, setup, row, media, instance, vision, model)
            if media.get("state") not in DONE:  # a passing failure: try again later
                attempts = int(media.get("attempts", 0))
                await _save(sessions, row, media)
                delays = setup.retry_delays_s
                turn.retry_in_ms = int(delays[min(attempts, len(delays)) - 1] * 1000)
                return turn
            if row.message_type == "image" and data is not None:
                turn.images[row.id or 0] = (data.mimetype, data.data)
            if media != media_of(row):
                await _save(sessions, row, media)
                if media.get("state") == "ready" and row.message_type == "audio":
                    turn.audio_seconds += float(media.get("transcribed_seconds") or 0)
            await _forget_inline(setup, row)
        if media.get("state") == "failed":
            turn.failures.append(f"{row.message_type}: {media.get('error', 'unknown')}")
    unusable = [r for r in rows if _unusable(r, media_of(r))]  # `_save` kept rows current
    if rows and len(unusable) == len(rows):
        turn.usable = False
        turn.notice = _notice(unusable)
    return turn


def _unusable(row: Message, media: dict[str, Any]) -> bool:
    """Media the agent cannot use, with no words from the customer beside it."""
    if row.content.strip():
        return False
    if row.message_type == "video":
        return True  # no caption: nothing to answer but "I cannot watch videos"
    return row.message_type in FETCHED and media.get("state") in ("failed", "too_large")


def _notice(rows: list[Message]) -> str:
    first = rows[0]
    media = media_of(first)
    texts = TOO_LARGE if media.get("state") == "too_large" else COULD_NOT
    return texts.get(first.message_type, COULD_NOT["document"])


async def _save(sessions: Any, row: Message, media: dict[str, Any]) -> None:
    async with sessions() as session, session.begin():
        await session.exec(
            update(Message)
            .where(col(Message.id) == row.id, col(Message.status) == "pending")
            .values(meta={**(row.meta or {}), "media": media})
        )
    row.meta = {**(row.meta or {}), "media": media}


async def _forget_inline(setup: MediaSetup, row: Message) -> None:
    if setup.redis is None or not row.whatsapp_message_id:
        return
    try:
        await stash.drop(setup.redis, setup.namespace, row.organization_id, row.whatsapp_message_id)
    except Exception as exc:  # it expires on its own
        log.warning("could not drop stashed media", error_type=type(exc).__name__)


async def _prepare_row(
    http: httpx.AsyncClient,
    setup: MediaSetup,
    row: Message,
    media: dict[str, Any],
    instance: WhatsAppInstance | None,
    vision: bool,
    model: str,
) -> tuple[dict[str, Any], Fetched | None]:
    """The row's media description after this attempt, and the bytes fetched, if any."""
    kind = row.message_type
    limit = setup.limits.for_kind(kind)
    declared = int(media.get("file_length") or 0)
    seconds = int(media.get("seconds") or 0)
    if declared > limit:
        return _done(media, "too_large", f"{declared} bytes, over the {limit}-byte limit"), None
    if kind == "video":
        return _done(media, "ready"), None  # its caption is all the agent gets
    if kind == "audio" and seconds > setup.limits.transcribe_seconds:
        reason = f"{seconds} s, over the {setup.limits.transcribe_seconds}-second limit"
        return _done(media, "too_large", reason), None
    if kind == "audio" and media.get("speech_to_text"):
        return _done({**media, "transcript": media["speech_to_text"]}, "ready"), None
    if kind == "image" and not vision:
        return _done({**media, "vision": False}, "ready"), None
    if kind == "document" and base_mime(media.get("mimetype")) != "application/pdf":
        return _done(media, "ready"), None  # acknowledged, never parsed
    if not allowed(kind, media.get("mimetype")):  # never parsed: a file like any other
        return _done(media, "unsupported", f"{base_mime(media.get('mimetype'))} is not read"), None
    started = time.monotonic()
    try:
        data = await _fetch(http, setup, row, media, instance, limit)
        media = {**media, "sha256_fetched": data.sha256, "bytes": len(data.data)}
        if kind == "audio":
            transcript = await transcribe(
                http,
                base_url=setup.openai_base_url,
                api_key=setup.openai_api_key or "",
                model=model,
                data=data.data,
                mimetype=data.mimetype,
                filename=_filename(data.mimetype),
                metrics=_metrics(setup),
            )
            spoken = transcript.seconds if transcript.seconds is not None else seconds
            media = {**media, "transcript": transcript.text, "transcribed_seconds": spoken}
        elif kind == "document":
            media = {**media, "text": pdf_text(data.data, limit=setup.limits.pdf_chars)}
        return _done(media, "ready"), data
    except MediaTooLarge as exc:
        return _done(media, "too_large", f"{exc.size} bytes, over the {exc.limit}-byte limit"), None
    except (MediaUnavailable, UnreadableDocument) as exc:
        return _done(media, "failed", str(exc)), None
    except (MediaTransient, TranscriptionFailed, httpx.HTTPError) as exc:
        permanent = isinstance(exc, TranscriptionFailed) and not exc.transient
        attempts = int(media.get("attempts", 0)) + 1
        if permanent or attempts > len(setup.retry_delays_s):
            return _done({**media, "attempts": attempts}, "failed", str(exc)), None
        log.warning(
            "media not ready, trying again",
            kind=kind,
            attempt=attempts,
            error_type=type(exc).__name__,
            seconds=round(time.monotonic() - started, 3),
        )
        return {**media, "attempts": attempts, "state": "retrying", "error": str(exc)}, None
    except Exception as exc:  # whatever else a file does to a parser: this file failed
        log.error("media could not be prepared", kind=kind, error_type=type(exc).__name__)
        return _done(media, "failed", f"{type(exc).__name__}: {exc}"), None


def _done(media: dict[str, Any], state: str, error: str | None = None) -> dict[str, Any]:
    done = {k: v for k, v in media.items() if k != "error"}
    done["state"] = state
    if error:
        done["error"] = error
    return done


async def _fetch(
    http: httpx.AsyncClient,
    setup: MediaSetup,
    row: Message,
    media: dict[str, Any],
    instance: WhatsAppInstance | None,
    limit: int,
) -> Fetched:
    if instance is None:
        raise MediaUnavailable("the message's WhatsApp instance is gone")
    kind = row.message_type
    if instance.provider == "cloud":
        media_id = media.get("media_id")
        if not media_id:
            raise MediaUnavailable("the webhook gave no media id")
        return await fetch_cloud(
            http,
            graph_url=instance.api_url,
            access_token=instance.access_token or "",
            media_id=str(media_id),
            limit=limit,
            expected_sha256=media.get("sha256"),
            kind=kind,
            metrics=_metrics(setup),
        )
    source = media.get("source") or {}
    inline = await _inline(setup, row)
    if not source and inline is None:
        raise MediaUnavailable("the webhook gave no way to fetch the media")
    return await fetch_evolution(
        http,
        api_url=instance.api_url,
        instance=instance.instance,
        api_key=instance.api_key or "",
        key=dict(source.get("key") or {}),
        message=dict(source.get("message") or {}),
        limit=limit,
        inline_base64=inline,
        kind=kind,
        metrics=_metrics(setup),
    )


def _metrics(setup: MediaSetup) -> MediaMetrics | None:
    return MediaMetrics(setup.redis, setup.namespace) if setup.redis is not None else None


async def _inline(setup: MediaSetup, row: Message) -> str | None:
    if setup.redis is None or not row.whatsapp_message_id:
        return None
    try:
        value = await stash.take(
            setup.redis, setup.namespace, row.organization_id, row.whatsapp_message_id
        )
    except Exception as exc:  # the gateway still has the bytes
        log.warning("could not read stashed media", error_type=type(exc).__name__)
        return None
    return value


def _filename(mimetype: str) -> str:
    extension = {
        "audio/ogg": "ogg",
        "audio/mpeg": "mp3",
        "audio/mp4": "m4a",
        "audio/x-m4a": "m4a",
        "audio/aac": "aac",
        "audio/amr": "amr",
        "audio/wav": "wav",
        "audio/x-wav": "wav",
        "audio/webm": "webm",
    }.get(base_mime(mimetype), "ogg")
    return f"audio.{extension}"
