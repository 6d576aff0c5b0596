"""`fetch_evolution` and `fetch_cloud` against the fake gateways, over real HTTP on loopback."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import pytest

from zapvet.errors import MediaTooLarge, MediaTransient, MediaUnavailable
from zapvet.media.fetch import Fetched, fetch_cloud, fetch_evolution
from zapvet.testing.gateways import FakeCloudAPI, FakeEvolutionAPI
from zapvet.testing.media import png, sha256, wav

pytestmark = pytest.mark.anyio

PHONE = "5511987654321"


async def _from_evolution(
    http: httpx.AsyncClient,
    fake: FakeEvolutionAPI,
    payload: dict[str, Any],
    *,
    limit: int = 1_000_000,
    api_key: str | None = None,
    inline: bool = False,
) -> Fetched:
    data = payload["data"]
    return await fetch_evolution(
        http,
        api_url=fake.base_url,
        instance=payload["instance"],
        api_key=fake.api_key if api_key is None else api_key,
        key=data["key"],
        message=data["message"],
        limit=limit,
        inline_base64=data["message"].get("base64") if inline else None,
        kind="audio",
    )


async def test_fetch_evolution_downloads_through_get_base64(
    http: httpx.AsyncClient, evolution: FakeEvolutionAPI
) -> None:
    audio = wav(1.5)
    payload = evolution.incoming_media(
        PHONE, "audio", audio, mimetype="audio/ogg; codecs=opus", seconds=2, ptt=True
    )

    fetched = await _from_evolution(http, evolution, payload)

    assert fetched.data == audio
    assert fetched.sha256 == sha256(audio)
    assert fetched.mimetype == "audio/ogg; codecs=opus"
    (request,) = evolution.requests
    assert request.path == "/chat/getBase64FromMediaMessage/petshop-centro"
    assert request.headers["apikey"] == evolution.api_key
    assert request.body == {
        "message": {"key": payload["data"]["key"], "message": payload["data"]["message"]},
        "convertToMp4": False,
    }


async def test_fetch_evolution_uses_the_webhooks_inline_base64(
    http: httpx.AsyncClient, evolution: FakeEvolutionAPI
) -> None:
    image = png()
    payload = evolution.incoming_media(
        PHONE, "image", image, mimetype="image/png", caption="a patinha", inline_base64=True
    )

    fetched = await _from_evolution(http, evolution, payload, inline=True)

    assert (fetched.data, fetched.sha256, fetched.mimetype) == (image, sha256(image), "image/png")
    assert evolution.requests == []  # nothing asked of Evolution


async def test_fetch_evolution_falls_back_to_the_endpoint_on_bad_inline_base64(
    http: httpx.AsyncClient, evolution: FakeEvolutionAPI
) -> None:
    image = png()
    payload = evolution.incoming_media(PHONE, "image", image, mimetype="image/png")
    payload["data"]["message"]["base64"] = "não é base64!"

    fetched = await _from_evolution(http, evolution, payload, inline=True)

    assert fetched.data == image
    assert len(evolution.requests) == 1


async def test_fetch_evolution_wrong_apikey_is_unavailable(
    http: httpx.AsyncClient, evolution: FakeEvolutionAPI
) -> None:
    payload = evolution.incoming_media(PHONE, "audio", wav(), mimetype="audio/wav")

    with pytest.raises(MediaUnavailable) as raised:
        await _from_evolution(http, evolution, payload, api_key="wrong")

    assert raised.value.status == 401


async def test_fetch_evolution_unknown_media_is_unavailable(
    http: httpx.AsyncClient, evolution: FakeEvolutionAPI
) -> None:
    payload = evolution.incoming_media(PHONE, "audio", None, mimetype="audio/ogg")

    with pytest.raises(MediaUnavailable) as raised:
        await _from_evolution(http, evolution, payload)

    assert raised.value.status == 400


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_fetch_evolution_server_failures_are_transient(
    http: httpx.AsyncClient, evolution: FakeEvolutionAPI, status: int
) -> None:
    payload = evolution.incoming_media(PHONE, "audio", wav(), mimetype="audio/wav")
    evolution.fail_next(status)

    with pytest.raises(MediaTransient) as raised:
        await _from_evolution(http, evolution, payload)
    assert raised.value.status == status

    fetched = await _from_evolution(http, evolution, payload)  # the fault was for one call
    assert fetched.sha256 == sha256(wav())


async def test_fetch_evolution_refuses_an_announced_size_over_the_limit(
    http: httpx.AsyncClient, evolution: FakeEvolutionAPI
) -> None:
    audio = wav(2.0)
    payload = evolution.incoming_media(PHONE, "audio", audio, mimetype="audio/wav")

    with pytest.raises(MediaTooLarge) as raised:
        await _from_evolution(http, evolution, payload, limit=1000)

    assert (raised.value.size, raised.value.limit) == (len(audio), 1000)
    assert evolution.requests == []  # refused on the payload's fileLength


async def test_fetch_evolution_stops_reading_a_file_over_the_limit(
    http: httpx.AsyncClient, evolution: FakeEvolutionAPI
) -> None:
    audio = wav(5.0)  # 80 kB
    payload = evolution.incoming_media(PHONE, "audio", audio, mimetype="audio/wav")
    del payload["data"]["message"]["audioMessage"]["fileLength"]  # no size announced

    with pytest.raises(MediaTooLarge) as raised:
        await _from_evolution(http, evolution, payload, limit=1000)

    # Refused on the answer's Content-Length: not a byte of the body was read.
    assert raised.value.size > len(audio) * 4 // 3 and raised.value.limit == 1000


async def test_fetch_evolution_refuses_an_inline_file_over_the_limit(
    http: httpx.AsyncClient, evolution: FakeEvolutionAPI
) -> None:
    payload = evolution.incoming_media(
        PHONE, "audio", wav(1.0), mimetype="audio/wav", inline_base64=True
    )
    del payload["data"]["message"]["audioMessage"]["fileLength"]

    with pytest.raises(MediaTooLarge):
        await _from_evolution(http, evolution, payload, limit=100, inline=True)


async def test_fetch_evolution_connection_refused_is_transient(
    http: httpx.AsyncClient,
) -> None:
    fake = FakeEvolutionAPI()
    with fake:
        payload = fake.incoming_media(PHONE, "audio", wav(), mimetype="audio/wav")
    # Stopped: its port refuses connections now.
    with pytest.raises(MediaTransient):
        await _from_evolution(http, fake, payload)


async def _from_cloud(
    http: httpx.AsyncClient,
    fake: FakeCloudAPI,
    media_id: str,
    *,
    limit: int = 1_000_000,
    expected_sha256: str | None = None,
    token: str | None = None,
) -> Fetched:
    return await fetch_cloud(
        http,
        graph_url=fake.base_url,
        access_token=fake.access_token if token is None else token,
        media_id=media_id,
        limit=limit,
        expected_sha256=expected_sha256,
        kind="audio",
    )


def _audio(payload: dict[str, Any]) -> dict[str, Any]:
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["type"] == "audio"
    audio: dict[str, Any] = message["audio"]
    return audio


async def test_fetch_cloud_looks_the_url_up_then_downloads_with_the_bearer(
    http: httpx.AsyncClient, cloud: FakeCloudAPI
) -> None:
    audio = wav(1.0)
    meta = _audio(cloud.incoming_media(PHONE, "audio", audio, mimetype="audio/ogg", ptt=True))

    fetched = await _from_cloud(http, cloud, meta["id"], expected_sha256=meta["sha256"])

    assert (fetched.data, fetched.sha256, fetched.mimetype) == (audio, sha256(audio), "audio/ogg")
    lookup, download = cloud.requests
    assert (lookup.method, lookup.path) == ("GET", f"/{cloud.version}/{meta['id']}")
    assert download.method == "GET" and download.path.startswith("/media-download/")
    bearer = f"Bearer {cloud.access_token}"
    assert lookup.headers["authorization"] == download.headers["authorization"] == bearer


@pytest.mark.parametrize("encoding", ["base64", "hex", "urlsafe"])
async def test_fetch_cloud_accepts_the_sha256_in_either_encoding(
    http: httpx.AsyncClient, cloud: FakeCloudAPI, encoding: str
) -> None:
    data = png()
    cloud.add_media("555", data, "image/png")
    digest = hashlib.sha256(data).digest()
    expected = {
        "base64": base64.b64encode(digest).decode(),
        "hex": digest.hex(),
        "urlsafe": base64.urlsafe_b64encode(digest).decode().rstrip("="),
    }[encoding]

    fetched = await _from_cloud(http, cloud, "555", expected_sha256=expected)

    assert fetched.data == data


async def test_fetch_cloud_refuses_bytes_that_do_not_match_the_webhooks_sha256(
    http: httpx.AsyncClient, cloud: FakeCloudAPI
) -> None:
    cloud.add_media("555", png(), "image/png")
    other = base64.b64encode(hashlib.sha256(b"another file").digest()).decode()

    with pytest.raises(MediaUnavailable, match="sha256"):
        await _from_cloud(http, cloud, "555", expected_sha256=other)


async def test_fetch_cloud_refuses_bytes_that_do_not_match_the_answers_sha256(
    http: httpx.AsyncClient, cloud: FakeCloudAPI
) -> None:
    cloud.add_media("555", png(), "image/png", sha256=sha256(b"corrupted on the way"))

    with pytest.raises(MediaUnavailable, match="sha256"):
        await _from_cloud(http, cloud, "555")


async def test_fetch_cloud_expired_url_is_unavailable(
    http: httpx.AsyncClient, cloud: FakeCloudAPI
) -> None:
    cloud.add_media("555", png(), "image/png")
    cloud.expire_media("555")

    with pytest.raises(MediaUnavailable) as raised:
        await _from_cloud(http, cloud, "555")

    assert raised.value.status == 404


async def test_fetch_cloud_unknown_media_and_bad_token_are_unavailable(
    http: httpx.AsyncClient, cloud: FakeCloudAPI
) -> None:
    cloud.add_media("555", png(), "image/png")

    with pytest.raises(MediaUnavailable) as unknown:
        await _from_cloud(http, cloud, "999")
    with pytest.raises(MediaUnavailable) as refused:
        await _from_cloud(http, cloud, "555", token="expired-token")

    assert (unknown.value.status, refused.value.status) == (400, 401)


async def test_fetch_cloud_refuses_a_file_size_over_the_limit_before_downloading(
    http: httpx.AsyncClient, cloud: FakeCloudAPI
) -> None:
    data = wav(1.0)
    cloud.add_media("555", data, "audio/wav")

    with pytest.raises(MediaTooLarge) as raised:
        await _from_cloud(http, cloud, "555", limit=1000)

    assert (raised.value.size, raised.value.limit) == (len(data), 1000)
    assert [r.path for r in cloud.requests] == [f"/{cloud.version}/555"]  # no download


async def test_fetch_cloud_stops_a_download_that_runs_past_the_limit(
    http: httpx.AsyncClient, cloud: FakeCloudAPI
) -> None:
    cloud.add_media("555", wav(5.0), "audio/wav", file_size=900)  # understated, and chunked

    with pytest.raises(MediaTooLarge) as raised:
        await _from_cloud(http, cloud, "555", limit=1000)

    assert (raised.value.size, raised.value.limit) == (1001, 1000)  # one byte past, no more


@pytest.mark.parametrize("status", [500, 502, 429])
async def test_fetch_cloud_server_failures_are_transient(
    http: httpx.AsyncClient, cloud: FakeCloudAPI, status: int
) -> None:
    cloud.add_media("555", png(), "image/png")
    cloud.fail_next(status)

    with pytest.raises(MediaTransient) as raised:
        await _from_cloud(http, cloud, "555")

    assert raised.value.status == status
