"""The media rig scenarios play against: a fake Evolution API serving each item's bytes and a
fake OpenAI server transcribing its voice notes (`evals.media.MediaRig`), for `zapvet eval`
and the tests alike.

Every item gets bytes of its own (a WAV tone of its own pitch per voice note), so the
transcript registered for its sha256 is the one the scenario wrote, and a voice note set to
`fail` fails every transcription of its own bytes and no other.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from zapvet.evals.scenario import (
    Audio,
    ContactCard,
    Document,
    Image,
    Location,
    MediaItem,
    Person,
    Sticker,
    Video,
)
from zapvet.media.prepare import MediaSetup
from zapvet.testing import media as files
from zapvet.testing.gateways import FakeEvolutionAPI
from zapvet.testing.inbound_media import vcard
from zapvet.testing.openai_server import FakeOpenAIServer

#: Transcription attempts a `fail: 5xx` voice note fails: the first try and every retry.
FAILED_TRIES = 4
#: Retries at once: a scenario waits for nothing.
RETRY_DELAYS_S = (0.0, 0.0, 0.0)
_MB = 1_000_000


class FakeMediaRig:
    """A `MediaRig` on two started fakes; `webhook` may be called from any thread."""

    def __init__(self, gateway: FakeEvolutionAPI, openai: FakeOpenAIServer) -> None:
        self.gateway, self.openai = gateway, openai
        self.setup = MediaSetup(
            openai_base_url=openai.base_url,
            openai_api_key="eval-key",
            retry_delays_s=RETRY_DELAYS_S,
        )
        self.gateway_url, self.gateway_key = gateway.base_url, gateway.api_key
        self._serial = itertools.count(1)
        self._lock = threading.Lock()

    def webhook(
        self, item: str | MediaItem, *, instance: str, sender: Person, at: datetime
    ) -> dict[str, Any]:
        """The Evolution webhook for `item`; see `evals.media.MediaRig.webhook`."""
        with self._lock:
            self.gateway.instances.add(instance)
            serial = next(self._serial)
        if isinstance(item, str):
            return self.gateway.incoming(
                instance, sender.phone, item, push_name=sender.name, timestamp=at
            )
        kind, data, options = self._content(item, serial)
        return self.gateway.incoming_media(
            sender.phone,
            kind,  # type: ignore[arg-type]
            data,
            instance=instance,
            push_name=sender.name,
            timestamp=at,
            **options,
        )

    def _content(self, item: MediaItem, serial: int) -> tuple[str, bytes | None, dict[str, Any]]:
        """(kind, bytes, `incoming_media` options) of `item`, its transcript registered."""
        match item:
            case Audio(audio=spec):
                # A pitch per item: no two voice notes share bytes, so none share a transcript.
                data = files.wav(spec.seconds, tone_hz=200 + serial % 3500)
                digest = files.sha256(data)
                self.openai.transcripts[digest] = spec.transcript
                if spec.fail is not None:
                    status, times = (500, FAILED_TRIES) if spec.fail == "5xx" else (400, 1)
                    self.openai.fail_transcriptions(status, times, sha256=digest)
                options = {"mimetype": "audio/wav", "seconds": spec.seconds, "ptt": True}
                return "audio", data, options
            case Image(image=spec):
                data = _sized(files.png(rgb=_colour(serial)), spec.size_mb)
                return "image", data, {"mimetype": "image/png", "caption": spec.caption or None}
            case Document(document=spec):
                options = {
                    "mimetype": "application/pdf",
                    "file_name": spec.file_name,
                    "caption": spec.caption or None,
                }
                return "document", files.pdf(spec.lines), options
            case Video(video=spec):
                data = _sized(b"\x00\x00\x00\x18ftypmp42" + serial.to_bytes(8), spec.size_mb)
                options = {
                    "mimetype": "video/mp4",
                    "seconds": spec.seconds,
                    "caption": spec.caption or None,
                }
                return "video", data, options
            case Sticker():
                return "sticker", files.png(rgb=_colour(serial)), {"mimetype": "image/webp"}
            case Location(location=spec):
                options = {
                    "latitude": spec.latitude,
                    "longitude": spec.longitude,
                    "place_name": spec.name,
                    "address": spec.address,
                }
                return "location", None, options
            case ContactCard(contact=spec):
                card = vcard(spec.name, spec.phone)
                return "contact", None, {"display_name": spec.name, "vcard": card}
        raise ValueError(f"not a media item: {item!r}")


def _sized(data: bytes, size_mb: float | None) -> bytes:
    """`data`, padded to `size_mb` megabytes when a scenario asks for a file that large."""
    if size_mb is None:
        return data
    return data + bytes(max(0, int(size_mb * _MB) - len(data)))


def _colour(serial: int) -> tuple[int, int, int]:
    return (serial * 37 % 256, serial * 91 % 256, serial * 53 % 256)


@contextmanager
def media_rig() -> Iterator[FakeMediaRig]:
    """Start the fake gateway and transcription server, and stop them afterwards."""
    with FakeEvolutionAPI(instances=()) as gateway, FakeOpenAIServer() as openai:
        yield FakeMediaRig(gateway, openai)
