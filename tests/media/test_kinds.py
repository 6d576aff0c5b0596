"""Which media types zapvet reads, and the byte limits per kind."""

from __future__ import annotations

import pytest

from zapvet.config import load_settings
from zapvet.errors import ConfigError
from zapvet.media.kinds import ALLOWED_MIME, allowed, base_mime
from zapvet.media.limits import MediaLimits


def test_kinds_base_mime_drops_parameters_and_case() -> None:
    assert base_mime("Audio/OGG; codecs=opus") == "audio/ogg"
    assert base_mime(" image/JPEG ") == "image/jpeg"
    assert base_mime(None) == "" and base_mime("") == ""


@pytest.mark.parametrize(
    ("kind", "mimetype"),
    [
        ("audio", "audio/ogg; codecs=opus"),
        ("audio", "audio/mpeg"),
        ("audio", "audio/mp4"),
        ("audio", "audio/aac"),
        ("audio", "audio/amr"),
        ("audio", "audio/wav"),
        ("audio", "audio/webm"),
        ("audio", "audio/x-m4a"),
        ("image", "image/jpeg"),
        ("image", "image/png"),
        ("image", "image/webp"),
        ("document", "application/pdf"),
    ],
)
def test_kinds_allow_list_reads_what_whatsapp_sends(kind: str, mimetype: str) -> None:
    assert allowed(kind, mimetype)


@pytest.mark.parametrize(
    ("kind", "mimetype"),
    [
        ("image", "image/svg+xml"),  # scriptable: never shown to a model
        ("image", "image/gif"),
        ("document", "application/vnd.ms-excel"),
        ("document", "application/x-msdownload"),
        ("audio", "video/mp4"),
        ("image", "application/pdf"),  # a type allowed for another kind
        ("video", "video/mp4"),  # video is kept, never parsed
        ("audio", None),
    ],
)
def test_kinds_anything_else_is_not_read(kind: str, mimetype: str | None) -> None:
    assert not allowed(kind, mimetype)


def test_kinds_allow_list_holds_bare_lower_case_types() -> None:
    for types in ALLOWED_MIME.values():
        assert all(t == base_mime(t) for t in types)


def test_limits_defaults_per_kind() -> None:
    limits = MediaLimits()
    assert limits.for_kind("audio") == 16_000_000
    assert limits.for_kind("image") == limits.for_kind("sticker") == 5_000_000
    assert limits.for_kind("document") == 100_000_000
    assert limits.for_kind("video") == 16_000_000
    assert (limits.transcribe_seconds, limits.pdf_chars) == (600, 4000)
    with pytest.raises(ValueError, match="location"):
        limits.for_kind("location")


def test_limits_from_settings_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZAPVET_MEDIA_IMAGE_MAX_MB", "2")
    monkeypatch.setenv("ZAPVET_TRANSCRIBE_MAX_MINUTES", "3")
    settings = load_settings()
    limits = MediaLimits.from_settings(settings)
    assert limits.image_bytes == 2_000_000 and limits.transcribe_seconds == 180
    assert limits.audio_bytes == 16_000_000
    assert settings.transcribe_model == "gpt-4o-mini-transcribe"
    assert settings.media_timeout_seconds == 30


@pytest.mark.parametrize(
    "variable",
    ["ZAPVET_MEDIA_AUDIO_MAX_MB", "ZAPVET_TRANSCRIBE_MAX_MINUTES", "ZAPVET_MEDIA_TIMEOUT_SECONDS"],
)
def test_limits_settings_must_be_positive(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "0")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert raised.value.variable == variable
