"""`zapvet chat`'s file commands read a path (quoted or not), a caption and the file's type."""

from __future__ import annotations

from pathlib import Path

import pytest

from zapvet.cli.attachment import guess_mimetype, read_attachment
from zapvet.errors import AttachmentError
from zapvet.testing import media as files


@pytest.mark.parametrize(
    ("name", "mimetype"),
    [
        ("recado.OGG", "audio/ogg; codecs=opus"),
        ("recado.opus", "audio/ogg; codecs=opus"),
        ("recado.wav", "audio/wav"),
        ("recado.mp3", "audio/mpeg"),
        ("recado.m4a", "audio/mp4"),
        ("foto.jpeg", "image/jpeg"),
        ("foto.webp", "image/webp"),
        ("exame.pdf", "application/pdf"),
        ("notas.txt", "text/plain"),
        ("sem-extensao", "application/octet-stream"),
    ],
)
def test_guess_mimetype_prefers_what_whatsapp_sends(name: str, mimetype: str) -> None:
    assert guess_mimetype(Path(name)) == mimetype


def test_read_attachment_takes_a_quoted_path_and_the_caption_after_it(tmp_path: Path) -> None:
    photo = tmp_path / "o thor.png"
    photo.write_bytes(files.png())
    got = read_attachment(f"/image '{photo}'  olha a pata dele ")
    assert (got.kind, got.path, got.mimetype) == ("image", photo, "image/png")
    assert (got.data, got.caption, got.seconds) == (photo.read_bytes(), "olha a pata dele", None)


def test_read_attachment_times_a_wav_voice_note_and_drops_its_caption(tmp_path: Path) -> None:
    note = tmp_path / "recado.wav"
    note.write_bytes(files.wav(seconds=3))
    got = read_attachment(f"/AUDIO {note} ignorado")
    assert (got.kind, got.seconds, got.caption) == ("audio", 3, None)
    assert got.describe() == "🎤 você enviou um áudio (3 s)"


def test_read_attachment_leaves_other_audio_untimed(tmp_path: Path) -> None:
    note = tmp_path / "recado.ogg"
    note.write_bytes(b"OggS not really")
    got = read_attachment(f"/audio {note}")
    assert (got.seconds, got.mimetype) == (None, "audio/ogg; codecs=opus")
    assert got.describe() == "🎤 você enviou um áudio"


def test_read_attachment_rejects_an_unclosed_quote() -> None:
    with pytest.raises(AttachmentError, match="unclosed quote"):
        read_attachment('/document "exame.pdf')
