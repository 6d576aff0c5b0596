"""How large a media file may be, per kind, and how long a voice note may be transcribed."""

from __future__ import annotations

from dataclasses import dataclass

from zapvet.config import Settings

_MB = 1_000_000


@dataclass(frozen=True)
class MediaLimits:
    """Byte limits per kind (downloads stop there), the longest transcription, the PDF text kept."""

    audio_bytes: int = 16 * _MB
    image_bytes: int = 5 * _MB
    document_bytes: int = 100 * _MB
    video_bytes: int = 16 * _MB
    transcribe_seconds: int = 600
    pdf_chars: int = 4000

    def for_kind(self, kind: str) -> int:
        """The byte limit for `kind` (audio, image, video, document; a sticker is an image).

        Raises:
            ValueError: an unknown kind.
        """
        kind = "image" if kind == "sticker" else kind
        if kind not in {"audio", "image", "video", "document"}:
            raise ValueError(f"no byte limit for media kind {kind!r}")
        limit: int = getattr(self, f"{kind}_bytes")
        return limit

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaLimits:
        return cls(
            audio_bytes=settings.media_audio_max_mb * _MB,
            image_bytes=settings.media_image_max_mb * _MB,
            document_bytes=settings.media_document_max_mb * _MB,
            video_bytes=settings.media_video_max_mb * _MB,
            transcribe_seconds=settings.transcribe_max_minutes * 60,
        )
