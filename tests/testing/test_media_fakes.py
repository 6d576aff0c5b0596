"""The fakes' media: webhook payloads the bridge's parsers read as the real ones, the media
endpoints' wire format, transcriptions, image parts and the generated files."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from typing import Any

import httpx
import pytest

from zapvet.bridge.cloud import parse_cloud
from zapvet.bridge.events import Inbound, Reaction
from zapvet.bridge.evolution import parse_evolution
from zapvet.testing.gateways import FakeCloudAPI, FakeEvolutionAPI
from zapvet.testing.media import png, sha256, wav, wav_seconds
from zapvet.testing.openai_server import FakeOpenAIServer, RecordedRequest, image_parts

PHONE = "5511987654321"


def _inbound(events: list[Any]) -> Inbound:
    (event,) = events
    assert isinstance(event, Inbound), event
    return event


def test_evolution_incoming_media_voice_note_as_evolution_posts_it() -> None:
    fake = FakeEvolutionAPI()
    audio = wav(1.0)

    payload = fake.incoming_media(
        PHONE,
        "audio",
        audio,
        mimetype="audio/ogg; codecs=opus",
        seconds=7,
        ptt=True,
        inline_base64=True,
        speech_to_text="oi",
    )

    data = payload["data"]
    assert data["messageType"] == "audioMessage"
    note = data["message"]["audioMessage"]
    assert (note["ptt"], note["seconds"], note["mimetype"]) == (True, 7, "audio/ogg; codecs=opus")
    assert note["fileLength"] == {"low": len(audio), "high": 0, "unsigned": True}
    assert base64.b64decode(note["fileSha256"]) == hashlib.sha256(audio).digest()
    assert {"url", "mediaKey", "directPath"} <= note.keys()
    assert base64.b64decode(data["message"]["base64"]) == audio
    assert data["message"]["speechToText"] == "oi"
    plain = fake.incoming("petshop-centro", PHONE, "oi")
    assert payload.keys() == plain.keys() and data.keys() == plain["data"].keys()
    event = _inbound(parse_evolution(payload))
    assert event.kind == "audio" and event.provider_id == data["key"]["id"]


def test_evolution_incoming_media_document_is_flattened_with_its_caption() -> None:
    payload = FakeEvolutionAPI().incoming_media(
        PHONE, "document", b"%PDF-", mimetype="application/pdf", caption="exame", file_name="x.pdf"
    )
    message = payload["data"]["message"]
    assert payload["data"]["messageType"] == "documentMessage"
    assert "documentWithCaptionMessage" not in message
    document = message["documentMessage"]
    assert (document["caption"], document["fileName"]) == ("exame", "x.pdf")
    event = _inbound(parse_evolution(payload))
    assert (event.kind, event.text) == ("document", "exame")


@pytest.mark.parametrize(
    ("kind", "message_type", "parsed"),
    [
        ("image", "imageMessage", "image"),
        ("video", "videoMessage", "video"),
        ("sticker", "stickerMessage", "sticker"),
        ("location", "locationMessage", "location"),
        ("contact", "contactMessage", "contact"),
        ("contacts", "contactsArrayMessage", "contact"),
    ],
)
def test_evolution_incoming_media_kinds_parse_as_their_kind(
    kind: Any, message_type: str, parsed: str
) -> None:
    data = png() if kind in {"image", "sticker"} else b"\x00\x00\x00\x18ftypmp42"
    payload = FakeEvolutionAPI().incoming_media(
        PHONE,
        kind,
        data if kind in {"image", "video", "sticker"} else None,
        mimetype={"image": "image/jpeg", "video": "video/mp4", "sticker": "image/webp"}.get(kind),
        contacts=[("Dra. Paula", "5511955556666"), ("Pet Táxi", "5511944443333")],
    )
    assert payload["data"]["messageType"] == message_type
    assert _inbound(parse_evolution(payload)).kind == parsed


def test_evolution_incoming_media_reaction_points_at_its_target() -> None:
    payload = FakeEvolutionAPI().incoming_media(
        PHONE, "reaction", None, emoji="❤️", target_id="3EB0AAAA"
    )
    (event,) = parse_evolution(payload)
    assert isinstance(event, Reaction)
    assert (event.emoji, event.target_id) == ("❤️", "3EB0AAAA")


def test_evolution_get_base64_answers_as_evolution_does() -> None:
    with FakeEvolutionAPI() as fake:
        image = png()
        payload = fake.incoming_media(PHONE, "image", image, mimetype="image/png", caption="oi")
        found = {"key": payload["data"]["key"], "message": payload["data"]["message"]}
        url = f"{fake.base_url}/chat/getBase64FromMediaMessage/petshop-centro"
        headers = {"apikey": fake.api_key}

        ok = httpx.post(url, json={"message": found, "convertToMp4": False}, headers=headers)
        bare = httpx.post(url, json={"message": {"key": found["key"]}}, headers=headers)
        text = dict(found, message={"conversation": "oi"})
        not_media = httpx.post(url, json={"message": text}, headers=headers)
        refused = httpx.post(url, json={"message": found}, headers={"apikey": "wrong"})
        unknown = httpx.post(f"{fake.base_url}/chat/getBase64FromMediaMessage/x", headers=headers)
        fake.fail_next(500)
        failed = httpx.post(url, json={"message": found}, headers=headers)

    assert ok.status_code == 201
    answer = ok.json()
    expected = {"mediaType", "fileName", "caption", "size", "mimetype", "base64", "buffer"}
    assert answer.keys() == expected
    assert base64.b64decode(answer["base64"]) == image
    assert (answer["mediaType"], answer["mimetype"], answer["caption"]) == (
        "imageMessage",
        "image/png",
        "oi",
    )
    assert bare.status_code == 400 and bare.json()["response"]["message"] == ["Message not found"]
    assert not_media.status_code == 400
    assert (refused.status_code, unknown.status_code, failed.status_code) == (401, 404, 500)


def test_cloud_incoming_media_voice_note_as_meta_posts_it() -> None:
    fake = FakeCloudAPI()
    audio = wav(1.0)

    payload = fake.incoming_media(
        PHONE, "audio", audio, mimetype="audio/ogg; codecs=opus", ptt=True
    )

    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["type"] == "audio"
    note = message["audio"]
    assert note.keys() == {"id", "mime_type", "sha256", "voice"} and note["voice"] is True
    assert base64.b64decode(note["sha256"]) == hashlib.sha256(audio).digest()
    plain = fake.incoming("106540352242922", PHONE, "oi")
    assert payload.keys() == plain.keys()
    assert payload["entry"][0]["changes"][0]["value"].keys() == (
        plain["entry"][0]["changes"][0]["value"].keys()
    )
    body = fake.encode(payload)
    assert fake.sign(body, "segredo").startswith("sha256=")
    ((phone_number_id, event),) = parse_cloud(payload)
    assert phone_number_id == "106540352242922"
    assert isinstance(event, Inbound) and event.kind == "audio"


@pytest.mark.parametrize(
    ("kind", "parsed"),
    [
        ("image", "image"),
        ("video", "video"),
        ("document", "document"),
        ("sticker", "sticker"),
        ("location", "location"),
        ("contacts", "contact"),
    ],
)
def test_cloud_incoming_media_kinds_parse_as_their_kind(kind: Any, parsed: str) -> None:
    files = {"image", "video", "document", "sticker"}
    payload = FakeCloudAPI().incoming_media(
        PHONE,
        kind,
        png() if kind in files else None,
        mimetype="image/png" if kind in files else None,
        caption="legenda" if kind in {"image", "video", "document"} else None,
    )
    ((_, event),) = parse_cloud(payload)
    assert isinstance(event, Inbound) and event.kind == parsed


def test_cloud_incoming_media_reaction_points_at_its_target() -> None:
    payload = FakeCloudAPI().incoming_media(
        PHONE, "reaction", None, emoji="👍", target_id="wamid.ABC"
    )
    ((_, event),) = parse_cloud(payload)
    assert isinstance(event, Reaction) and event.target_id == "wamid.ABC"


def test_cloud_media_url_and_download_as_meta_serves_them() -> None:
    with FakeCloudAPI() as fake:
        data = png()
        fake.add_media("777", data, "image/png")
        bearer = {"Authorization": f"Bearer {fake.access_token}"}
        lookup = httpx.get(f"{fake.base_url}/777", headers=bearer)
        url = lookup.json()["url"]
        download = httpx.get(url, headers=bearer)
        unauthorised = httpx.get(url)
        unknown = httpx.get(f"{fake.base_url}/778", headers=bearer)
        fake.expire_media("777")
        expired = httpx.get(url, headers=bearer)

    assert lookup.status_code == 200
    assert lookup.json() == {
        "messaging_product": "whatsapp",
        "url": url,
        "mime_type": "image/png",
        "sha256": sha256(data),
        "file_size": len(data),
        "id": "777",
    }
    assert download.content == data and download.headers["content-type"] == "image/png"
    assert unauthorised.status_code == 401
    assert unauthorised.json()["error"]["code"] == 190
    assert (unknown.status_code, expired.status_code) == (400, 404)


def test_openai_transcriptions_refuse_a_request_without_a_file() -> None:
    with FakeOpenAIServer() as fake:
        missing = httpx.post(f"{fake.base_url}/audio/transcriptions", data={"model": "whisper-1"})
        fake.fail_transcriptions(503)
        failed = httpx.post(
            f"{fake.base_url}/audio/transcriptions",
            data={"model": "whisper-1"},
            files={"file": ("a.wav", wav(), "audio/wav")},
        )

    assert missing.status_code == 400
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert failed.status_code == 503 and failed.json()["error"]["type"] == "server_error"
    (recorded,) = fake.transcriptions  # the refused request had no file to record
    assert recorded.data == wav()


def test_openai_transcription_faults_for_one_audio_spare_the_others() -> None:
    failing, other = wav(1.0, tone_hz=300), wav(1.0, tone_hz=500)

    def post(data: bytes) -> int:
        files = {"file": ("a.wav", data, "audio/wav")}
        url = f"{fake.base_url}/audio/transcriptions"
        return httpx.post(url, data={"model": "whisper-1"}, files=files).status_code

    with FakeOpenAIServer() as fake:
        fake.fail_transcriptions(500, times=2, sha256=sha256(failing))
        statuses = [post(other), post(failing), post(other), post(failing), post(failing)]

    assert statuses == [200, 500, 200, 500, 200]


def test_openai_image_parts_decode_data_urls_only() -> None:
    image = png(4, 4)
    encoded = base64.b64encode(image).decode()
    inline = {"url": f"data:image/png;base64,{encoded}", "detail": "low"}
    content = [
        {"type": "text", "text": "olha"},
        {"type": "image_url", "image_url": inline},
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
    ]
    request = RecordedRequest({"messages": [{"role": "user", "content": content}]}, {})

    (part,) = image_parts(request)

    assert (part.data, part.mimetype, part.detail, part.sha256) == (
        image,
        "image/png",
        "low",
        sha256(image),
    )
    assert request.images == [part]


def test_media_png_is_a_valid_png() -> None:
    data = png(3, 2, (1, 2, 3))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    header = data[16 : 16 + length]
    (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
    assert kind == b"IHDR" and crc == zlib.crc32(kind + header)
    assert struct.unpack(">II", header[:8]) == (3, 2)
    idat_length = struct.unpack(">I", data[33:37])[0]
    pixels = zlib.decompress(data[41 : 41 + idat_length])
    assert pixels == (b"\x00" + bytes([1, 2, 3]) * 3) * 2


def test_media_wav_lasts_what_was_asked() -> None:
    assert wav_seconds(wav(1.5, rate=8000)) == 1.5
    assert wav_seconds(b"not a wav") is None
