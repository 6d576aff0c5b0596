"""Typing indicator and read receipts (`Receipts`), over real HTTP against the fake gateways."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from zapvet.bridge.senders import (
    CloudSender,
    EvolutionSender,
    RejectedSend,
    SendError,
    build_receipts,
)
from zapvet.models.whatsapp import WhatsAppInstance
from zapvet.testing.gateways import FakeCloudAPI, FakeEvolutionAPI

pytestmark = pytest.mark.anyio

EVOLUTION_KEY = "B6D711FCDE4D4FD5936544120E713976"
CLOUD_TOKEN = "EAAG-cloud-access-token-7f3a9c"
PHONE_NUMBER_ID = "106540352242922"
CHAT = "5511987654321@s.whatsapp.net"
WAMID = "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBBMTIzNDU2Nzg5MEFCQ0RFRgA="


@pytest.fixture
def evolution() -> Iterator[FakeEvolutionAPI]:
    with FakeEvolutionAPI(api_key=EVOLUTION_KEY) as server:
        yield server


@pytest.fixture
def cloud() -> Iterator[FakeCloudAPI]:
    with FakeCloudAPI(access_token=CLOUD_TOKEN, phone_number_ids={PHONE_NUMBER_ID}) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http_client:
        yield http_client


def evolution_sender(server: FakeEvolutionAPI, client: httpx.AsyncClient) -> EvolutionSender:
    return EvolutionSender(server.base_url, "petshop-centro", EVOLUTION_KEY, client)


async def test_receipts_evolution_presence_posts_composing_with_its_delay(
    evolution: FakeEvolutionAPI, client: httpx.AsyncClient
) -> None:
    await evolution_sender(evolution, client).send_presence(CHAT, "3EB0AA", delay_ms=8000)

    (request,) = evolution.requests
    assert (request.method, request.path) == ("POST", "/chat/sendPresence/petshop-centro")
    assert request.headers["apikey"] == EVOLUTION_KEY
    assert request.body == {"number": CHAT, "presence": "composing", "delay": 8000}
    assert evolution.sent == []  # a presence is not a message


async def test_receipts_evolution_marks_exactly_the_batch_read(
    evolution: FakeEvolutionAPI, client: httpx.AsyncClient
) -> None:
    await evolution_sender(evolution, client).mark_read(CHAT, ["3EB0AA", "3EB0BB"])

    (request,) = evolution.requests
    assert request.path == "/chat/markMessageAsRead/petshop-centro"
    assert request.body == {
        "readMessages": [
            {"remoteJid": CHAT, "fromMe": False, "id": "3EB0AA"},
            {"remoteJid": CHAT, "fromMe": False, "id": "3EB0BB"},
        ]
    }
    assert evolution.read_marks == request.body["readMessages"]


async def test_receipts_evolution_refusals_and_outages_raise_the_send_errors(
    evolution: FakeEvolutionAPI, client: httpx.AsyncClient
) -> None:
    wrong_key = EvolutionSender(evolution.base_url, "petshop-centro", "wrong", client)
    with pytest.raises(RejectedSend) as refused:
        await wrong_key.mark_read(CHAT, ["3EB0AA"])
    assert refused.value.status == 401
    assert "wrong" not in str(refused.value)

    evolution.courtesy_status = 503
    with pytest.raises(SendError):
        await evolution_sender(evolution, client).send_presence(CHAT, "3EB0AA", delay_ms=100)


async def test_receipts_cloud_typing_indicator_marks_the_newest_message_read(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    sender = CloudSender(cloud.base_url, PHONE_NUMBER_ID, CLOUD_TOKEN, client)

    await sender.send_presence("5511987654321", WAMID, delay_ms=8000)
    await sender.mark_read("5511987654321", ["wamid.older", WAMID])

    assert cloud.read_marks == [
        {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": WAMID,
            "typing_indicator": {"type": "text"},
        },
        {"messaging_product": "whatsapp", "status": "read", "message_id": WAMID},
    ]
    assert [r.path for r in cloud.requests] == [f"/v21.0/{PHONE_NUMBER_ID}/messages"] * 2
    assert cloud.sent == []


async def test_receipts_cloud_refused_token_is_a_rejected_send(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    sender = CloudSender(cloud.base_url, PHONE_NUMBER_ID, "expired-token", client)

    with pytest.raises(RejectedSend) as refused:
        await sender.mark_read("5511987654321", [WAMID])

    assert refused.value.status == 401
    assert "expired-token" not in str(refused.value)


async def test_build_receipts_is_the_instance_sender(client: httpx.AsyncClient) -> None:
    instance = WhatsAppInstance(
        organization_id=1,
        provider="evolution",
        instance="petshop-centro",
        api_url="http://127.0.0.1:9",
        api_key=EVOLUTION_KEY,
    )

    assert isinstance(build_receipts(instance, client), EvolutionSender)
