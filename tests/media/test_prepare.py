"""The drain's media step on its own: retries on the sends' schedule, limits, the allow-list.

Drains run here as the worker runs them, against the fake gateway and transcription server
on loopback, with a queue that records the delay each retry asked for (no clock waits).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from sqlalchemy import Engine, text
from sqlmodel import Session, col, update

from tests.conftest import start_conversation
from zapvet.bridge.events import Inbound
from zapvet.bridge.evolution import parse_evolution
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.media.prepare import COULD_NOT, RETRY_DELAYS_S, TOO_LARGE, MediaSetup
from zapvet.models import Message, Organization, WhatsAppInstance
from zapvet.queue.drain import Outcome, drain_conversation
from zapvet.queue.resources import Resources, build_resources
from zapvet.testing import media as files
from zapvet.testing.gateways import FakeEvolutionAPI
from zapvet.testing.openai_server import FakeOpenAIServer
from zapvet.testing.stack import API_KEY, INSTANCE

ANA = "5511977776666"
OGG = "audio/ogg; codecs=opus"

pytestmark = pytest.mark.anyio


@dataclass
class Delays:
    """An `Enqueue` that records the delay of every drain it is asked for."""

    drains: list[int] = field(default_factory=list)
    sends: list[int] = field(default_factory=list)

    def drain(
        self, conversation_id: int, *, delay_ms: int = 0, organization_id: int | None = None
    ) -> None:
        self.drains.append(delay_ms)

    def send(self, message_id: int, *, retry: bool = False, refused: str | None = None) -> None:
        self.sends.append(message_id)

    def proactive(self, proactive_id: int) -> None:
        raise AssertionError("no staff alert expected")

    def webhook(self, delivery_id: int) -> None:
        raise AssertionError("no webhook expected")


@dataclass
class Bench:
    engine: Engine
    gateway: FakeEvolutionAPI
    openai: FakeOpenAIServer
    res: Resources
    model: ScriptedChatModel
    org_id: int
    conversation_id: int
    queue: Delays = field(default_factory=Delays)

    def receive(self, kind: str, data: bytes | None, **options: Any) -> None:
        """Store the gateway's webhook for `kind` as the bridge would: pending, past debounce."""
        (event,) = parse_evolution(self.gateway.incoming_media(ANA, kind, data, **options))
        assert isinstance(event, Inbound)
        moment = datetime.now(UTC) - timedelta(minutes=1)
        with Session(self.engine) as session:
            instance = session.exec(
                text("SELECT id FROM whatsapp_instances WHERE organization_id = :o"),
                params={"o": self.org_id},
            ).one()[0]
            session.add(
                Message(
                    organization_id=self.org_id,
                    conversation_id=self.conversation_id,
                    instance_id=instance,
                    whatsapp_message_id=event.provider_id,
                    chat_id=event.chat_id,
                    direction="incoming",
                    content=event.text,
                    message_type=event.kind,
                    status="pending",
                    meta={"media": event.media},
                    message_at=moment,
                    created_at=moment,
                    updated_at=moment,
                )
            )
            session.commit()

    async def drain(self) -> Outcome:
        return await drain_conversation(self.res, self.queue, self.conversation_id)

    def replies(self) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT content FROM messages WHERE direction = 'outgoing' ORDER BY id")
            )
            return [row[0] for row in rows]

    def media(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            meta = conn.execute(
                text("SELECT meta FROM messages WHERE direction = 'incoming'")
            ).scalar_one()
        return dict(meta["media"])


@pytest.fixture
def fakes() -> Iterator[tuple[FakeEvolutionAPI, FakeOpenAIServer]]:
    with (
        FakeEvolutionAPI(api_key=API_KEY, instances=[INSTANCE]) as gateway,
        FakeOpenAIServer() as openai,
    ):
        yield gateway, openai


@pytest.fixture
async def bench(
    database_url: str,
    engine: Engine,
    session: Session,
    petfeliz: Organization,
    fakes: tuple[FakeEvolutionAPI, FakeOpenAIServer],
) -> AsyncIterator[Bench]:
    gateway, openai = fakes
    assert petfeliz.id is not None
    session.exec(
        update(WhatsAppInstance)
        .where(col(WhatsAppInstance.organization_id) == petfeliz.id)
        .values(api_url=gateway.base_url)
    )
    session.commit()
    context = start_conversation(session, petfeliz, ANA)
    setup = MediaSetup(openai_base_url=openai.base_url, openai_api_key="test-key")
    model = ScriptedChatModel()  # only what a test scripts: an unscripted call fails the turn
    res = build_resources(database_url, lambda: model, pool_size=4, media=setup)
    yield Bench(engine, gateway, openai, res, model, petfeliz.id, context.conversation_id)
    await res.close()


async def test_a_transcription_failing_for_a_passing_reason_is_retried_after_2_4_and_8_s(
    bench: Bench,
) -> None:
    bench.openai.fail_transcriptions(503, times=4)
    bench.receive("audio", files.wav(), mimetype=OGG, ptt=True)

    outcomes = [await bench.drain() for _ in range(4)]

    assert outcomes == [Outcome.DEFERRED] * 3 + [Outcome.ANSWERED]
    assert bench.queue.drains == [2000, 4000, 8000]  # as sends: 2, 4, 8 seconds
    assert RETRY_DELAYS_S == (2, 4, 8)
    assert len(bench.openai.transcriptions) == 4
    assert bench.replies() == [COULD_NOT["audio"]]
    media = bench.media()
    assert (media["state"], media["attempts"]) == ("failed", 4)


async def test_a_retry_that_succeeds_is_answered_with_the_transcript(bench: Bench) -> None:
    audio = files.wav(seconds=1.0)
    bench.openai.transcripts[files.sha256(audio)] = "Vocês abrem domingo?"
    bench.openai.fail_transcriptions(500, times=1)
    bench.model.add(AIMessage("Aos domingos não abrimos."))
    bench.receive("audio", audio, mimetype=OGG, ptt=True)

    assert await bench.drain() is Outcome.DEFERRED
    assert (bench.media()["state"], bench.media()["attempts"]) == ("retrying", 1)
    assert await bench.drain() is Outcome.ANSWERED

    assert bench.replies() == ["Aos domingos não abrimos."]
    assert bench.media()["transcript"] == "Vocês abrem domingo?"
    (call,) = bench.model.calls
    assert call["messages"][-1].text == "Vocês abrem domingo?"


async def test_an_audio_longer_than_the_transcription_limit_is_not_downloaded(
    bench: Bench,
) -> None:
    bench.receive("audio", files.wav(seconds=1.0), mimetype=OGG, ptt=True, seconds=11 * 60)

    assert await bench.drain() is Outcome.ANSWERED

    assert bench.replies() == [TOO_LARGE["audio"]]
    assert bench.openai.transcriptions == []
    assert not [r for r in bench.gateway.requests if "getBase64" in r.path]
    assert bench.media()["state"] == "too_large"


async def test_a_file_type_outside_the_allow_list_is_acknowledged_never_fetched(
    bench: Bench,
) -> None:
    bench.receive("document", b"MZ\x90\x00 not a pdf", mimetype="application/x-msdownload")
    bench.receive("image", b"<svg onload=alert(1)>", mimetype="image/svg+xml")
    bench.model.add(AIMessage("Recebi seus arquivos; alguém da equipe vai olhar."))

    assert await bench.drain() is Outcome.ANSWERED

    assert not [r for r in bench.gateway.requests if "getBase64" in r.path]
    (call,) = bench.model.calls
    seen = [m.text for m in call["messages"][-2:]]
    assert "documento (documento.pdf) que você não consegue ler" in seen[0]
    assert "arquivo de imagem de um tipo que você não abre" in seen[1]
    assert not any(isinstance(m.content, list) for m in call["messages"])  # no image sent
