"""Media I/O: fetching voice notes, images and documents from the gateways, transcribing audio
and reading PDFs. The worker calls it; nothing here touches the database or the queue."""

from zapvet.errors import (
    MediaError,
    MediaTooLarge,
    MediaTransient,
    MediaUnavailable,
    TranscriptionFailed,
    UnreadableDocument,
)

__all__ = [
    "MediaError",
    "MediaTooLarge",
    "MediaTransient",
    "MediaUnavailable",
    "TranscriptionFailed",
    "UnreadableDocument",
]
