"""Voice notes, photos, documents, locations, contacts, stickers and reactions, end to end.

Webhooks go over HTTP to the bridge, a Dramatiq worker drains the conversation, the media
are fetched from the fake gateway (Evolution's `getBase64FromMediaMessage`, or the webhook's
own base64 through Redis) and transcribed by the fake OpenAI server, and the chat model is
that same server over HTTP, so the tests see the exact bytes that reached each endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from langchain_openai import ChatOpenAI
from sqlalchemy import Engine

from tests.conftest import EXAMPLE_ORG
from tests.pipeline.conftest import rows, scalar
from tests.pipeline.support import wait_until
from tests.pipeline.test_cloud import ACCESS_TOKEN, CloudStack, cloud_stack
from zapvet.embedded import ServiceUrls
from zapvet.media import stash
from zapvet.media.prepare import COULD_NOT, TOO_LARGE, MediaSetup
from zapvet.testing import media as files
from zapvet.testing.openai_server import FakeOpenAIServer, RecordedRequest, Reply
from zapvet.testing.stack import LocalStack

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fakes

ANA = "5511977776666"
OWNER = "5511988887777"  # examples/petfeliz.toml's owner
OGG = "audio/ogg; codecs=opus"


def user_texts(request: RecordedRequest) -> list[str]:
    """The words of this turn's customer messages (after the last system prompt)."""
    messages = request.body["messages"]
    last_system = max(i for i, m in enumerate(messages) if m["role"] == "system")
    texts = []
    for message in messages[last_system + 1 :]:
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.append(" ".join(p["text"] for p in content if p.get("type") == "text"))
    return texts


def history_texts(request: RecordedRequest) -> str:
    """Every user message of the request, as one text."""
    return json.dumps([m for m in request.body["messages"] if m["role"] == "user"])


def echo(body: dict[str, Any]) -> Reply:
    """A model that answers with the customer's words it was given, in order."""
    return Reply("Recebi: " + " | ".join(user_texts(RecordedRequest(body, {}))))


def on_fake_openai(openai: FakeOpenAIServer) -> tuple[ChatOpenAI, MediaSetup]:
    """The chat model and the transcription endpoint, both the fake OpenAI server."""
    model = ChatOpenAI(
        model="gpt-4o-mini",
        api_key="test-key",  # type: ignore[arg-type]
        base_url=openai.base_url,
        max_retries=0,
    )
    setup = MediaSetup(
        openai_base_url=openai.base_url,
        openai_api_key="test-key",
        retry_delays_s=(0.05, 0.05, 0.05),  # the 2/4/8 s schedule: tests/media/test_prepare.py
    )
    return model, setup


@dataclass
class Pipeline:
    stack: LocalStack
    openai: FakeOpenAIServer
    engine: Engine
    redis_url: str

    @property
    def gateway(self) -> Any:
        return self.stack.gateway

    def post(self, payload: dict[str, Any], *, times: int = 1) -> None:
        for _ in range(times):
            assert self.stack.post(payload).status_code == 200

    def settle(self, replies: int) -> list[str]:
        """Wait until `replies` texts were sent and nothing waits; the texts sent."""
        self.stack.wait(
            lambda: len(self.gateway.sent) >= replies and self.waiting() == 0,
            what=f"{replies} replies",
        )
        return [sent.text for sent in self.gateway.sent]

    def waiting(self) -> int:
        return int(
            scalar(
                self.engine,
                "SELECT count(*) FROM messages WHERE status IN ('pending', 'sending')",
            )
            or 0
        )

    def chats(self) -> list[RecordedRequest]:
        return self.openai.requests

    def media_row(self) -> dict[str, Any]:
        meta = scalar(
            self.engine,
            "SELECT meta FROM messages WHERE direction = 'incoming' AND message_type <> 'text'"
            " ORDER BY id LIMIT 1",
        )
        assert isinstance(meta, dict)
        return dict(meta["media"])

    def interactions(self) -> list[tuple[object, ...]]:
        return rows(
            self.engine,
            "SELECT status, error_message, audio_seconds, images FROM ai_interactions ORDER BY id",
        )

    def fetches(self) -> list[Any]:
        return [r for r in self.gateway.requests if "getBase64FromMediaMessage" in r.path]


Start = Callable[..., Pipeline]


@pytest.fixture
def start(database_url: str, services: ServiceUrls, engine: Engine) -> Iterator[Start]:
    """Start the pipeline for the example shop (with `org_text` changes, a debounce)."""
    started: list[tuple[LocalStack, FakeOpenAIServer]] = []

    def run(
        *, debounce: int = 0, worker: bool = True, org: Callable[[str], str] = lambda text: text
    ) -> Pipeline:
        openai = FakeOpenAIServer(responder=echo)
        openai.start()
        model, setup = on_fake_openai(openai)
        stack = LocalStack(
            database_url=database_url,
            redis_url=services.redis_url,
            model=model,
            org_text=org(EXAMPLE_ORG.read_text()),
            debounce_seconds=debounce,
            media=setup,
            worker=worker,
        )
        started.append((stack, openai))
        stack.start()
        return Pipeline(stack, openai, engine, services.redis_url)

    yield run
    for stack, openai in started:
        stack.stop()
        openai.stop()
        client = redis.Redis.from_url(services.redis_url)
        for key in client.scan_iter(match=f"{stack.namespace}:*"):
            client.delete(key)
        client.close()


def test_a_voice_note_delivered_five_times_is_transcribed_once_and_answered_once(
    start: Start,
) -> None:
    pipe = start()
    audio = files.wav(seconds=2.0)
    pipe.openai.transcripts[files.sha256(audio)] = "Quero agendar uma consulta para o Rex"
    note = pipe.gateway.incoming_media(ANA, "audio", audio, mimetype=OGG, ptt=True, seconds=2)

    pipe.post(note, times=5)

    assert pipe.settle(1) == ["Recebi: Quero agendar uma consulta para o Rex"]
    (heard,) = pipe.openai.transcriptions
    assert heard.sha256 == files.sha256(audio)  # the exact bytes, fetched from the gateway
    assert (heard.model, heard.language) == ("gpt-4o-mini-transcribe", "pt")
    assert len(pipe.fetches()) == 1
    (chat,) = pipe.chats()
    assert user_texts(chat) == ["Quero agendar uma consulta para o Rex"]
    media = pipe.media_row()
    assert media["state"] == "ready"
    assert media["transcript"] == "Quero agendar uma consulta para o Rex"
    assert media["sha256_fetched"] == files.sha256(audio)
    assert (media["mimetype"], media["seconds"], media["voice"]) == (OGG, 2, True)
    assert media["file_length"] == len(audio)
    assert pipe.interactions() == [("success", None, 2.0, 0)]


def test_the_webhooks_own_base64_is_used_and_never_stored(start: Start) -> None:
    pipe = start()
    audio = files.wav(seconds=1.0)
    note = pipe.gateway.incoming_media(ANA, "audio", audio, mimetype=OGG, inline_base64=True)
    inline = note["data"]["message"]["base64"]

    pipe.post(note)

    pipe.settle(1)
    assert pipe.fetches() == []  # the bytes came with the webhook
    assert [t.sha256 for t in pipe.openai.transcriptions] == [files.sha256(audio)]
    stored = scalar(pipe.engine, "SELECT string_agg(meta::text, '') FROM messages")
    assert inline[:40] not in str(stored)
    client = redis.Redis.from_url(pipe.redis_url)
    try:
        key = stash.stash_key(
            pipe.stack.namespace, pipe.stack.organization_id, note["data"]["key"]["id"]
        )
        assert client.exists(key) == 0  # dropped once the turn no longer needs it
    finally:
        client.close()


def test_evolutions_own_transcript_skips_the_download_and_the_transcription(
    start: Start,
) -> None:
    pipe = start()
    note = pipe.gateway.incoming_media(
        ANA, "audio", files.wav(), mimetype=OGG, ptt=True, speech_to_text="Tem horário amanhã?"
    )

    pipe.post(note)

    assert pipe.settle(1) == ["Recebi: Tem horário amanhã?"]
    assert pipe.fetches() == []
    assert pipe.openai.transcriptions == []


def test_a_voice_note_and_a_text_in_one_burst_get_one_answer(start: Start) -> None:
    # Both arrive before any drain runs (the worker starts after them): on a busy machine a
    # real-time race with the debounce window would decide the batch instead.
    pipe = start(debounce=2, worker=False)
    audio = files.wav(seconds=3.0)
    pipe.openai.transcripts[files.sha256(audio)] = "Queria marcar banho pro Thor"
    pipe.post(pipe.gateway.incoming_media(ANA, "audio", audio, mimetype=OGG, ptt=True))
    pipe.stack.say(ANA, "sábado de manhã")
    pipe.stack.start_worker()

    assert pipe.settle(1) == ["Recebi: Queria marcar banho pro Thor | sábado de manhã"]
    assert len(pipe.chats()) == 1


def test_a_photo_reaches_the_model_once_as_a_low_detail_image(start: Start) -> None:
    pipe = start()
    photo = files.png(16, 16)
    pipe.post(
        pipe.gateway.incoming_media(
            ANA, "image", photo, mimetype="image/png", caption="Olha a patinha dele"
        )
    )
    pipe.settle(1)
    pipe.stack.say(ANA, "e agora?")
    pipe.settle(2)

    first, second = pipe.chats()
    (image,) = first.images
    assert image.sha256 == files.sha256(photo)  # the exact bytes
    assert (image.mimetype, image.detail) == ("image/png", "low")
    assert user_texts(first) == [
        "[O cliente enviou uma imagem, que segue.] Legenda: Olha a patinha dele"
    ]
    assert second.images == []  # later turns see a placeholder, not the photo again
    assert "[O cliente enviou uma imagem.] Legenda: Olha a patinha dele" in history_texts(second)
    assert [i[3] for i in pipe.interactions()] == [1, 0]
    assert "base64" not in json.dumps(pipe.media_row())


def test_with_vision_off_a_photo_reaches_the_model_as_words_only(start: Start) -> None:
    pipe = start(org=lambda text: text.replace("vision = true", "vision = false"))
    pipe.post(
        pipe.gateway.incoming_media(
            ANA, "image", files.png(), mimetype="image/png", caption="Ele está assim"
        )
    )

    pipe.settle(1)

    (chat,) = pipe.chats()
    assert chat.images == []
    assert pipe.fetches() == []
    assert "não consegue ver imagens" in user_texts(chat)[0]


@pytest.mark.parametrize(("status", "tries"), [(500, 4), (400, 1)], ids=["5xx", "4xx"])
def test_a_transcription_that_keeps_failing_gets_the_write_instead_reply(
    start: Start, status: int, tries: int
) -> None:
    pipe = start()
    pipe.openai.fail_transcriptions(status, times=4)
    pipe.post(pipe.gateway.incoming_media(ANA, "audio", files.wav(), mimetype=OGG, ptt=True))

    assert pipe.settle(1) == [COULD_NOT["audio"]]
    assert len(pipe.openai.transcriptions) == tries  # a first try and 3 retries, or just one
    assert pipe.chats() == []
    ((outcome, error, _, _),) = pipe.interactions()
    assert outcome == "error" and "media could not be used: audio" in str(error)
    assert pipe.media_row()["state"] == "failed"
    assert scalar(pipe.engine, "SELECT status FROM messages WHERE direction = 'incoming'") == (
        "processed"
    )


def test_media_the_gateway_no_longer_has_gets_the_write_instead_reply(start: Start) -> None:
    pipe = start()
    pipe.post(pipe.gateway.incoming_media(ANA, "audio", None, mimetype=OGG, ptt=True))

    assert pipe.settle(1) == [COULD_NOT["audio"]]
    assert pipe.media_row()["state"] == "failed"


def test_a_sticker_or_a_reaction_alone_gets_no_reply(start: Start) -> None:
    pipe = start()
    pipe.post(pipe.gateway.incoming_media(ANA, "sticker", files.png()))
    pipe.post(pipe.gateway.incoming_media(ANA, "reaction", None, emoji="❤️", target_id="X1"))
    pipe.stack.say(ANA, "oi")

    assert pipe.settle(1) == ["Recebi: oi"]
    (chat,) = pipe.chats()
    assert "figurinha" not in history_texts(chat) and "❤️" not in history_texts(chat)


def test_a_location_and_a_contact_card_read_as_words(start: Start) -> None:
    pipe = start()
    pipe.post(
        pipe.gateway.incoming_media(
            ANA,
            "location",
            None,
            latitude=-23.5614,
            longitude=-46.6559,
            place_name="Pet Feliz",
            address="Av. Paulista, 1000",
        )
    )
    pipe.settle(1)
    pipe.post(
        pipe.gateway.incoming_media(
            ANA,
            "contacts",
            None,
            contacts=[("Maria Souza", "5511955554444"), ("Rui", "5511933332222")],
        )
    )
    pipe.settle(2)

    first, second = pipe.chats()
    assert user_texts(first) == [
        "[O cliente enviou uma localização: Pet Feliz, Av. Paulista, 1000 "
        "(coordenadas -23.5614, -46.6559).]"
    ]
    assert user_texts(second) == [  # "this is my wife's number": usable as words
        "[O cliente enviou contatos: Maria Souza +5511955554444; Rui +5511933332222.]"
    ]


def test_a_pdfs_text_reaches_the_model(start: Start) -> None:
    pipe = start()
    card = files.pdf(["Carteira de vacinação do Thor", "Antirrábica: 10/03/2026"])
    pipe.post(
        pipe.gateway.incoming_media(
            ANA, "document", card, mimetype="application/pdf", file_name="carteira.pdf"
        )
    )

    pipe.settle(1)

    (chat,) = pipe.chats()
    (text,) = user_texts(chat)
    assert "carteira.pdf" in text and "Antirrábica: 10/03/2026" in text
    assert pipe.media_row()["text"].startswith("Carteira de vacinação do Thor")


def test_a_video_over_the_limit_gets_a_polite_reply_without_the_model(start: Start) -> None:
    pipe = start()
    big = bytes(17 * 1024 * 1024)
    pipe.post(pipe.gateway.incoming_media(ANA, "video", big, mimetype="video/mp4"))

    assert pipe.settle(1) == [TOO_LARGE["video"]]
    assert pipe.chats() == [] and pipe.fetches() == []
    assert pipe.media_row()["state"] == "too_large"


def test_the_owners_spoken_question_reaches_aurora_as_words(start: Start) -> None:
    pipe = start()
    audio = files.wav(seconds=1.5)
    pipe.openai.transcripts[files.sha256(audio)] = "Quantos clientes atendi hoje?"
    pipe.post(pipe.gateway.incoming_media(OWNER, "audio", audio, mimetype=OGG, ptt=True))

    assert pipe.settle(1) == ["Recebi: Quantos clientes atendi hoje?"]
    (chat,) = pipe.chats()
    assert "Aurora" in chat.body["messages"][0]["content"]


# -- the Cloud API: the media URL from the Graph API, then the bytes, both with the token --


@pytest.fixture
def cloud(
    database_url: str, services: ServiceUrls
) -> Iterator[tuple[CloudStack, FakeOpenAIServer]]:
    with FakeOpenAIServer(responder=echo) as openai:
        model, setup = on_fake_openai(openai)
        with cloud_stack(database_url, services.redis_url, model, media=setup) as stack:
            yield stack, openai


def cloud_replies(engine: Engine, stack: CloudStack, count: int) -> list[str]:
    def settled() -> bool:
        waiting = scalar(
            engine, "SELECT count(*) FROM messages WHERE status IN ('pending', 'sending')"
        )
        return len(stack.gateway.sent) >= count and waiting == 0

    wait_until(settled, what=f"{count} replies")
    return [sent.text for sent in stack.gateway.sent]


def test_cloud_a_voice_note_is_fetched_with_the_token_checked_and_transcribed(
    cloud: tuple[CloudStack, FakeOpenAIServer], engine: Engine
) -> None:
    stack, openai = cloud
    audio = files.wav(seconds=1.0)
    openai.transcripts[files.sha256(audio)] = "Vocês abrem sábado?"
    note = stack.gateway.incoming_media(ANA, "audio", audio, mimetype=OGG, ptt=True)

    assert stack.deliver(note).status_code == 200

    assert cloud_replies(engine, stack, 1) == ["Recebi: Vocês abrem sábado?"]
    media_id = note["entry"][0]["changes"][0]["value"]["messages"][0]["audio"]["id"]
    lookup, download = [r for r in stack.gateway.requests if r.method == "GET"]
    assert lookup.path.endswith(f"/{media_id}")
    assert {lookup.headers["authorization"], download.headers["authorization"]} == {
        f"Bearer {ACCESS_TOKEN}"
    }
    assert [t.sha256 for t in openai.transcriptions] == [files.sha256(audio)]


def test_cloud_an_expired_photo_gets_the_write_instead_reply(
    cloud: tuple[CloudStack, FakeOpenAIServer], engine: Engine
) -> None:
    stack, openai = cloud
    photo = stack.gateway.incoming_media(ANA, "image", files.png(), mimetype="image/png")
    stack.gateway.expire_media(
        photo["entry"][0]["changes"][0]["value"]["messages"][0]["image"]["id"]
    )

    assert stack.deliver(photo).status_code == 200

    assert cloud_replies(engine, stack, 1) == [COULD_NOT["image"]]
    assert openai.requests == []


def test_cloud_a_pdf_a_location_and_a_sticker_read_as_on_evolution(
    cloud: tuple[CloudStack, FakeOpenAIServer], engine: Engine
) -> None:
    stack, openai = cloud
    card = files.pdf(["Carteira de vacinação da Mel", "V10: 02/02/2026"])
    stack.deliver(stack.gateway.incoming_media(ANA, "sticker", files.png(), mimetype="image/webp"))
    stack.deliver(
        stack.gateway.incoming_media(
            ANA, "document", card, mimetype="application/pdf", file_name="mel.pdf"
        )
    )
    assert cloud_replies(engine, stack, 1)[0].startswith("Recebi: [O cliente enviou um documento")
    stack.deliver(
        stack.gateway.incoming_media(
            ANA, "location", None, latitude=-22.9, longitude=-43.2, address="Rua do Catete, 10"
        )
    )
    cloud_replies(engine, stack, 2)

    first, second = openai.requests
    assert "mel.pdf" in user_texts(first)[0] and "V10: 02/02/2026" in user_texts(first)[0]
    assert "figurinha" not in history_texts(first)  # the sticker never reached the model
    assert user_texts(second) == [
        "[O cliente enviou uma localização: Rua do Catete, 10 (coordenadas -22.9, -43.2).]"
    ]
