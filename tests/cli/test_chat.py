"""`zapvet chat` sends typed files (`/audio`, `/image`, `/document`) to a running bridge.

The bridge, worker and gateway run in this process (`LocalStack`); the chat model and the
transcription endpoint are one fake OpenAI server, so the tests see the exact bytes that
reached it. The gateway was never told about the files: they can only have travelled
inside the webhooks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from langchain_openai import ChatOpenAI
from sqlalchemy import text

from tests.conftest import EXAMPLE_ORG
from zapvet import db
from zapvet.bridge.app import MAX_BODY_BYTES
from zapvet.cli.chat import Line, chat, find_line
from zapvet.embedded import ServiceUrls
from zapvet.media.prepare import MediaSetup
from zapvet.testing import media as files
from zapvet.testing.openai_server import FakeOpenAIServer, Reply
from zapvet.testing.stack import LocalStack

ANA = "5511977776666"
HEARD = "Quero marcar um banho pro Thor amanhã."
REPLY = "Claro! Que horas fica bom?"


@dataclass
class Running:
    stack: LocalStack
    openai: FakeOpenAIServer
    line: Line
    database_url: str

    def chat(self, *typed: str) -> list[str]:
        said: list[str] = []
        chat(self.database_url, self.stack.bridge_url, self.line, ANA, typed, said.append)
        return said


@pytest.fixture
def running(database_url: str, services: ServiceUrls) -> Iterator[Running]:
    """The example shop on a pipeline whose model and transcriber are a fake OpenAI server."""
    with FakeOpenAIServer(responder=lambda body: Reply(REPLY)) as openai:
        model = ChatOpenAI(
            model="gpt-4o-mini",
            api_key="k",  # type: ignore[arg-type]
            base_url=openai.base_url,
            max_retries=0,
        )
        openai.default_transcript = HEARD
        stack = LocalStack(
            database_url=database_url,
            redis_url=services.redis_url,
            model=model,
            org_text=EXAMPLE_ORG.read_text(),
            debounce_seconds=0,
            media=MediaSetup(openai_base_url=openai.base_url, openai_api_key="k"),
        )
        with stack:
            yield Running(stack, openai, find_line(database_url, "petfeliz"), database_url)


def _incoming(database_url: str) -> list[tuple[str, str]]:
    engine = db.build_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            sql = "SELECT message_type, status FROM messages WHERE direction = 'incoming'"
            return [(str(kind), str(status)) for kind, status in conn.execute(text(sql))]
    finally:
        engine.dispose()


@pytest.mark.slow  # the whole pipeline, in this process
def test_chat_audio_command_sends_a_voice_note_that_is_transcribed(
    running: Running, tmp_path: Path
) -> None:
    note = tmp_path / "recado.wav"
    note.write_bytes(files.wav(seconds=2))
    said = running.chat(f"/audio {note}")
    assert "🎤 você enviou um áudio (2 s)" in said
    assert [t.sha256 for t in running.openai.transcriptions] == [files.sha256(note.read_bytes())]
    assert f"🐾 {running.line.name}: {REPLY}" in said
    assert HEARD in str(running.openai.requests[-1].body["messages"])
    fetched = [r for r in running.stack.gateway.requests if "getBase64" in r.path]
    assert fetched == []  # the bytes came with the webhook, not from the gateway
    assert _incoming(running.database_url) == [("audio", "processed")]


@pytest.mark.slow  # the whole pipeline, in this process
def test_chat_image_command_shows_the_photo_and_caption_to_the_model(
    running: Running, tmp_path: Path
) -> None:
    photo = tmp_path / "thor.png"
    photo.write_bytes(files.png(rgb=(10, 200, 30)))
    said = running.chat(f"/image {photo} olha a pata do Thor")
    assert "🖼️ você enviou uma imagem (thor.png, " in said[0] and said[0].endswith("do Thor")
    images = [image for request in running.openai.requests for image in request.images]
    assert [(i.sha256, i.mimetype) for i in images] == [
        (files.sha256(photo.read_bytes()), "image/png")
    ]
    assert "olha a pata do Thor" in str(running.openai.requests[-1].body["messages"])
    assert f"🐾 {running.line.name}: {REPLY}" in said
    assert running.openai.transcriptions == []


# -- refused before sending: no bridge needed (any send would fail to connect) ----------------

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens in tests


def _offline(database_url: str, *typed: str) -> list[str]:
    said: list[str] = []
    line = Line(organization_id=1, name="Pet Feliz", instance="petfeliz", token="t")
    chat(database_url, NOWHERE, line, ANA, typed, said.append, wait_s=0)
    return said


def test_chat_missing_file_is_reported_and_nothing_is_sent(database_url: str) -> None:
    said = _offline(database_url, "/audio /nonexistent.ogg")
    assert said == [
        "not sent: no file /nonexistent.ogg: "
        "type /audio PATH, /image PATH [caption] or /document PATH [caption]"
    ]


def test_chat_unknown_command_and_missing_path_are_reported(database_url: str) -> None:
    said = _offline(database_url, "/video thor.mp4", "/image")
    assert [line.split(":")[0:2] for line in said] == [
        ["not sent", " unknown command /video"],
        ["not sent", " /image needs a file"],
    ]


def test_chat_file_over_the_bridge_limit_is_refused_locally(
    database_url: str, tmp_path: Path
) -> None:
    big = tmp_path / "exame.pdf"
    with big.open("wb") as out:  # sparse: the size without the disk
        out.truncate(MAX_BODY_BYTES * 3 // 4)
    said = _offline(database_url, f"/document {big}")
    assert len(said) == 1 and said[0].startswith(f"not sent: {big} is 24.0 MB")
    assert "the bridge takes files up to" in said[0]


def test_chat_path_that_is_not_a_file_is_reported(database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "a folder.png"
    folder.mkdir()
    said = _offline(database_url, f'/image "{folder}" legenda')
    assert len(said) == 1 and said[0].startswith(f"not sent: {folder} is not a file: type ")
