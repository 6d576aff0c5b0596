"""`zapvet chat`'s file commands: `/audio PATH`, `/image PATH [caption]`, `/document PATH
[caption]`, read from disk into what an Evolution media webhook carries."""

from __future__ import annotations

import math
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from zapvet.bridge.app import MAX_BODY_BYTES
from zapvet.errors import AttachmentError
from zapvet.testing.media import wav_seconds

Kind = Literal["audio", "image", "document"]
COMMANDS: dict[str, Kind] = {"/audio": "audio", "/image": "image", "/document": "document"}
USAGE = "type /audio PATH, /image PATH [caption] or /document PATH [caption]"
#: What WhatsApp itself sends for these extensions (a voice note is Opus in Ogg).
MIME_TYPES = {
    ".ogg": "audio/ogg; codecs=opus",
    ".opus": "audio/ogg; codecs=opus",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".pdf": "application/pdf",
}
#: Room in the webhook for everything but the file's base64 (key, names, timestamps).
ENVELOPE_BYTES = 16 * 1024


@dataclass(frozen=True)
class Attachment:
    kind: Kind
    path: Path
    data: bytes
    mimetype: str
    caption: str | None = None
    #: The audio's duration from its header (WAV only); None when unknown.
    seconds: int | None = None

    def describe(self) -> str:
        """What the terminal echoes once it was sent."""
        if self.kind == "audio":
            length = f" ({self.seconds} s)" if self.seconds is not None else ""
            return f"🎤 você enviou um áudio{length}"
        what = "uma imagem" if self.kind == "image" else "um documento"
        icon = "🖼️" if self.kind == "image" else "📄"
        said = f": {self.caption}" if self.caption else ""
        return f"{icon} você enviou {what} ({self.path.name}, {_size(len(self.data))}){said}"


def is_command(typed: str) -> bool:
    return typed.startswith("/")


def guess_mimetype(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in MIME_TYPES:
        return MIME_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def encoded_size(size: int) -> int:
    """Bytes of base64 for `size` bytes of file."""
    return 4 * math.ceil(size / 3)


def read_attachment(typed: str) -> Attachment:
    """The file a command line names, read and described.

    Raises:
        AttachmentError: an unknown command, no path, a file that cannot be read or one too big
            for the bridge to accept; the message says what to type instead.
    """
    command, _, rest = typed.strip().partition(" ")
    kind = COMMANDS.get(command.lower())
    if kind is None:
        raise AttachmentError(f"unknown command {command}: {USAGE}")
    path_text, caption = _split_path(rest.strip(), command)
    path = Path(path_text).expanduser()
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise AttachmentError(f"{path} is not a file: {USAGE}")
        if encoded_size(size) + ENVELOPE_BYTES > MAX_BODY_BYTES:
            limit = _size((MAX_BODY_BYTES - ENVELOPE_BYTES) * 3 // 4)
            raise AttachmentError(f"{path} is {_size(size)}: the bridge takes files up to {limit}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise AttachmentError(f"no file {path}: {USAGE}") from None
    except OSError as exc:
        raise AttachmentError(f"cannot read {path} ({exc.strerror or exc}): {USAGE}") from None
    seconds = None
    if kind == "audio":
        caption = ""  # WhatsApp voice notes carry no caption
        duration = wav_seconds(data)
        seconds = max(1, round(duration)) if duration is not None else None
    return Attachment(kind, path, data, guess_mimetype(path), caption or None, seconds)


def _split_path(rest: str, command: str) -> tuple[str, str]:
    """The path (quoted if it has spaces) and the caption after it."""
    if not rest:
        raise AttachmentError(f"{command} needs a file: {USAGE}")
    if rest[0] in "'\"":
        end = rest.find(rest[0], 1)
        if end < 0:
            raise AttachmentError(f"unclosed quote in {rest!r}: {USAGE}")
        return rest[1:end], rest[end + 1 :].strip()
    path, _, caption = rest.partition(" ")
    return path, caption.strip()


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"
