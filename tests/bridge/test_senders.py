"""The Evolution and Cloud API senders, over real HTTP against the fake gateways."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from zapvet.bridge.senders import (
    CloudSender,
    EvolutionSender,
    RejectedSend,
    SendError,
    build_sender,
)
from zapvet.bridge.splitting import split_text
from zapvet.errors import ConfigError, PermanentError, TransientError
from zapvet.models.whatsapp import Provider, WhatsAppInstance
from zapvet.testing.gateways import FakeCloudAPI, FakeEvolutionAPI

pytestmark = pytest.mark.anyio

EVOLUTION_KEY = "B6D711FCDE4D4FD5936544120E713976"
CLOUD_TOKEN = "EAAG-cloud-access-token-7f3a9c"
PHONE_NUMBER_ID = "106540352242922"
CUSTOMER = "5511987654321"
TEXT = "Olá, Ana! O banho do Thor está confirmado para amanhã às 10h."
#: Far longer than the senders' timeout in the stall tests, so the outcome cannot depend on load.
STALL_S = 60.0


@pytest.fixture
def evolution() -> Iterator[FakeEvolutionAPI]:
    with FakeEvolutionAPI(api_key=EVOLUTION_KEY, not_on_whatsapp={"5511900000000"}) as server:
        yield server


@pytest.fixture
def cloud() -> Iterator[FakeCloudAPI]:
    with FakeCloudAPI(access_token=CLOUD_TOKEN, phone_number_ids={PHONE_NUMBER_ID}) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http_client:
        yield http_client


def evolution_sender(
    server: FakeEvolutionAPI,
    client: httpx.AsyncClient,
    *,
    instance: str = "petshop-centro",
    api_key: str = EVOLUTION_KEY,
    timeout: float = 15.0,
) -> EvolutionSender:
    return EvolutionSender(server.base_url, instance, api_key, client, timeout=timeout)


def cloud_sender(
    server: FakeCloudAPI,
    client: httpx.AsyncClient,
    *,
    phone_number_id: str = PHONE_NUMBER_ID,
    access_token: str = CLOUD_TOKEN,
    timeout: float = 15.0,
) -> CloudSender:
    return CloudSender(server.base_url, phone_number_id, access_token, client, timeout=timeout)


def assert_no_secrets(error: Exception, *secrets: str) -> None:
    rendered = f"{error!s} {error!r} {getattr(error, 'detail', '')}"
    for secret in secrets:
        assert secret not in rendered


async def test_evolution_sender_posts_number_and_text_with_apikey(
    evolution: FakeEvolutionAPI, client: httpx.AsyncClient
) -> None:
    message_id = await evolution_sender(evolution, client).send_text(CUSTOMER, TEXT)

    assert evolution.sent == [(CUSTOMER, TEXT, message_id)]
    assert message_id.startswith("3EB0")
    (request,) = evolution.requests
    assert (request.method, request.path) == ("POST", "/message/sendText/petshop-centro")
    assert request.headers["apikey"] == EVOLUTION_KEY
    assert request.headers["content-type"] == "application/json"
    assert request.body == {"number": CUSTOMER, "text": TEXT}


async def test_evolution_sender_returns_a_fresh_id_per_message(
    evolution: FakeEvolutionAPI, client: httpx.AsyncClient
) -> None:
    sender = evolution_sender(evolution, client)

    ids = [await sender.send_text(f"{CUSTOMER}@s.whatsapp.net", f"parte {n}") for n in range(3)]

    assert len(set(ids)) == 3
    assert [sent.provider_id for sent in evolution.sent] == ids


async def test_evolution_sender_raises_send_error_on_server_error_then_recovers(
    evolution: FakeEvolutionAPI, client: httpx.AsyncClient
) -> None:
    evolution.fail_next(500, times=2, message="Connection Closed")
    sender = evolution_sender(evolution, client)

    for _ in range(2):
        with pytest.raises(SendError) as failure:
            await sender.send_text(CUSTOMER, TEXT)
        assert failure.value.status == 500
        assert failure.value.detail == "Connection Closed"
        assert isinstance(failure.value, TransientError)
    message_id = await sender.send_text(CUSTOMER, TEXT)

    assert evolution.sent == [(CUSTOMER, TEXT, message_id)]
    assert len(evolution.requests) == 3


async def test_evolution_sender_treats_rate_limiting_as_transient(
    evolution: FakeEvolutionAPI, client: httpx.AsyncClient
) -> None:
    evolution.fail_next(429)

    with pytest.raises(SendError) as failure:
        await evolution_sender(evolution, client).send_text(CUSTOMER, TEXT)

    assert failure.value.status == 429
    assert evolution.sent == []


async def test_evolution_sender_rejects_a_wrong_api_key(
    evolution: FakeEvolutionAPI, client: httpx.AsyncClient
) -> None:
    wrong_key = "0000WRONGKEY0000"

    with pytest.raises(RejectedSend) as failure:
        await evolution_sender(evolution, client, api_key=wrong_key).send_text(CUSTOMER, TEXT)

    assert failure.value.status == 401
    assert failure.value.detail == "Unauthorized"
    assert isinstance(failure.value, PermanentError)
    assert_no_secrets(failure.value, wrong_key, EVOLUTION_KEY, TEXT)


async def test_evolution_sender_rejects_an_unknown_instance(
    evolution: FakeEvolutionAPI, client: httpx.AsyncClient
) -> None:
    sender = evolution_sender(evolution, client, instance="petshop-sul")

    with pytest.raises(RejectedSend) as failure:
        await sender.send_text(CUSTOMER, TEXT)

    assert failure.value.status == 404
    assert failure.value.detail == 'The "petshop-sul" instance does not exist'
    assert_no_secrets(failure.value, EVOLUTION_KEY, TEXT)


async def test_evolution_sender_rejects_a_number_not_on_whatsapp(
    evolution: FakeEvolutionAPI, client: httpx.AsyncClient
) -> None:
    with pytest.raises(RejectedSend) as failure:
        await evolution_sender(evolution, client).send_text("5511900000000", TEXT)

    assert failure.value.status == 400
    assert json.loads(failure.value.detail) == {
        "jid": "5511900000000@s.whatsapp.net",
        "exists": False,
        "number": "5511900000000",
    }
    assert "HTTP 400" in str(failure.value)
    assert evolution.sent == []


async def test_evolution_sender_times_out_as_send_error(
    evolution: FakeEvolutionAPI, client: httpx.AsyncClient
) -> None:
    evolution.stall_next(STALL_S)

    with pytest.raises(SendError) as failure:
        await evolution_sender(evolution, client, timeout=0.2).send_text(CUSTOMER, TEXT)

    assert failure.value.status is None
    assert failure.value.detail.startswith("no answer within 0.2 s")
    assert_no_secrets(failure.value, EVOLUTION_KEY, TEXT)


async def test_cloud_sender_posts_the_text_message_with_bearer_token(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    message_id = await cloud_sender(cloud, client).send_text(CUSTOMER, TEXT)

    assert cloud.sent == [(CUSTOMER, TEXT, message_id)]
    assert message_id.startswith("wamid.")
    (request,) = cloud.requests
    assert (request.method, request.path) == ("POST", f"/v21.0/{PHONE_NUMBER_ID}/messages")
    assert request.headers["authorization"] == f"Bearer {CLOUD_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "type": "text",
        "text": {"preview_url": False, "body": TEXT},
    }


async def test_cloud_sender_addresses_a_bsuid_as_recipient(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    bsuid = "BR.1502576394655843"

    message_id = await cloud_sender(cloud, client).send_text(bsuid, TEXT)

    (request,) = cloud.requests
    assert request.body["recipient"] == bsuid
    assert "to" not in request.body
    assert cloud.sent == [(bsuid, TEXT, message_id)]


async def test_cloud_sender_raises_send_error_on_server_error(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    cloud.fail_next(503)

    with pytest.raises(SendError) as failure:
        await cloud_sender(cloud, client).send_text(CUSTOMER, TEXT)

    assert failure.value.status == 503
    assert "code 2" in failure.value.detail
    assert cloud.sent == []


async def test_cloud_sender_treats_meta_throttling_codes_as_transient(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    cloud.fail_next(400, code=131056, message="(#131056) Pair rate limit hit")

    with pytest.raises(SendError) as failure:
        await cloud_sender(cloud, client).send_text(CUSTOMER, TEXT)

    assert failure.value.status == 400
    assert failure.value.detail == "(#131056) Pair rate limit hit | code 131056"


async def test_cloud_sender_rejects_a_wrong_token_without_revealing_it(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    wrong_token = "EAAG-expired-token-0001"

    with pytest.raises(RejectedSend) as failure:
        await cloud_sender(cloud, client, access_token=wrong_token).send_text(CUSTOMER, TEXT)

    assert failure.value.status == 401
    assert "Invalid OAuth access token" in failure.value.detail
    assert "code 190" in failure.value.detail
    assert_no_secrets(failure.value, wrong_token, CLOUD_TOKEN, TEXT)


async def test_cloud_sender_rejects_an_unknown_phone_number_id(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    with pytest.raises(RejectedSend) as failure:
        await cloud_sender(cloud, client, phone_number_id="999").send_text(CUSTOMER, TEXT)

    assert failure.value.status == 400
    assert "Object with ID '999' does not exist" in failure.value.detail
    assert "code 100" in failure.value.detail


async def test_cloud_sender_rejects_a_body_over_4096_characters(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    too_long = "Oi! " * 1025

    with pytest.raises(RejectedSend) as failure:
        await cloud_sender(cloud, client).send_text(CUSTOMER, too_long)

    assert failure.value.status == 400
    assert "must be at most 4096 characters" in failure.value.detail
    assert_no_secrets(failure.value, CLOUD_TOKEN, too_long)


async def test_cloud_sender_sends_every_part_of_a_split_reply(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    paragraph = ("Banho, tosa higiênica, hidratação e corte de unhas inclusos. " * 30).strip()
    reply = "\n\n".join([paragraph] * 5)
    sender = cloud_sender(cloud, client)

    ids = [await sender.send_text(CUSTOMER, part) for part in split_text(reply)]

    assert len(ids) == 3
    assert [sent.provider_id for sent in cloud.sent] == ids
    assert "\n\n".join(sent.text for sent in cloud.sent) == reply


async def test_cloud_sender_times_out_as_send_error(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    cloud.stall_next(STALL_S)

    with pytest.raises(SendError) as failure:
        await cloud_sender(cloud, client, timeout=0.2).send_text(CUSTOMER, TEXT)

    assert failure.value.status is None
    assert_no_secrets(failure.value, CLOUD_TOKEN, TEXT)


async def test_sender_reports_a_refused_connection_as_send_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        sender = EvolutionSender(
            "http://evo.internal:8080", "petshop-centro", EVOLUTION_KEY, client
        )
        with pytest.raises(SendError) as failure:
            await sender.send_text(CUSTOMER, TEXT)

    assert failure.value.status is None
    assert failure.value.detail == "ConnectError: [Errno 111] Connection refused"


async def test_sender_reports_an_html_gateway_error_as_send_error() -> None:
    def bad_gateway(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html><body>502 Bad Gateway</body></html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(bad_gateway)) as client:
        sender = CloudSender("https://graph.example/v21.0", PHONE_NUMBER_ID, CLOUD_TOKEN, client)
        with pytest.raises(SendError) as failure:
            await sender.send_text(CUSTOMER, TEXT)

    assert failure.value.status == 502
    assert "502 Bad Gateway" in failure.value.detail


async def test_sender_scrubs_credentials_and_text_echoed_by_the_provider() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        echoed = f"{request.headers['apikey']} cannot send {json.loads(request.content)['text']}"
        return httpx.Response(400, json={"status": 400, "response": {"message": [echoed]}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(echo)) as client:
        sender = EvolutionSender("http://evo.internal", "petshop-centro", EVOLUTION_KEY, client)
        with pytest.raises(RejectedSend) as failure:
            await sender.send_text(CUSTOMER, TEXT)

    assert failure.value.detail == "[redacted] cannot send [redacted]"
    assert_no_secrets(failure.value, EVOLUTION_KEY, TEXT)


async def test_sender_refuses_to_retry_an_accepted_send_without_id() -> None:
    def no_id(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"status": "PENDING"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(no_id)) as client:
        sender = EvolutionSender("http://evo.internal", "petshop-centro", EVOLUTION_KEY, client)
        with pytest.raises(RejectedSend) as failure:
            await sender.send_text(CUSTOMER, TEXT)

    assert failure.value.status == 201
    assert "no message id" in failure.value.detail


async def test_build_sender_picks_evolution_for_an_evolution_instance(
    evolution: FakeEvolutionAPI, client: httpx.AsyncClient
) -> None:
    instance = WhatsAppInstance(
        organization_id=1,
        provider="evolution",
        instance="petshop-centro",
        api_url=evolution.base_url + "/",
        api_key=EVOLUTION_KEY,
    )

    sender = build_sender(instance, client)
    message_id = await sender.send_text(CUSTOMER, TEXT)

    assert isinstance(sender, EvolutionSender)
    assert evolution.sent == [(CUSTOMER, TEXT, message_id)]


async def test_build_sender_picks_cloud_for_a_cloud_instance(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    instance = WhatsAppInstance(
        organization_id=1,
        provider="cloud",
        instance=PHONE_NUMBER_ID,
        api_url=cloud.base_url,
        access_token=CLOUD_TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
    )

    sender = build_sender(instance, client)
    message_id = await sender.send_text(CUSTOMER, TEXT)

    assert isinstance(sender, CloudSender)
    assert cloud.sent == [(CUSTOMER, TEXT, message_id)]


@pytest.mark.parametrize("provider", ["evolution", "cloud"])
async def test_build_sender_refuses_an_instance_without_credentials(
    provider: Provider, client: httpx.AsyncClient
) -> None:
    instance = WhatsAppInstance(
        organization_id=1, provider=provider, instance="petshop-centro", api_url="http://x"
    )

    with pytest.raises(ConfigError, match="petshop-centro"):
        build_sender(instance, client)


async def test_cloud_sender_posts_a_template_with_its_body_parameters_in_order(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    cloud.approve_template("lembrete_horario", "pt_BR", parameters=2)

    message_id = await cloud_sender(cloud, client).send_template(
        CUSTOMER, "lembrete_horario", "pt_BR", ["Ana", "10:00"]
    )

    assert message_id.startswith("wamid.")
    (request,) = cloud.requests
    assert request.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "type": "template",
        "template": {
            "name": "lembrete_horario",
            "language": {"code": "pt_BR"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Ana"},
                        {"type": "text", "text": "10:00"},
                    ],
                }
            ],
        },
    }
    assert [(t.name, t.parameters) for t in cloud.sent_templates] == [
        ("lembrete_horario", ["Ana", "10:00"])
    ]


async def test_cloud_sender_rejects_free_text_outside_the_window_with_code_131047(
    cloud: FakeCloudAPI, client: httpx.AsyncClient
) -> None:
    cloud.close_window(CUSTOMER)

    with pytest.raises(RejectedSend) as caught:
        await cloud_sender(cloud, client).send_text(CUSTOMER, TEXT)

    assert (caught.value.status, caught.value.code) == (400, 131047)
    assert "Re-engagement message" in caught.value.detail
    assert cloud.sent == []


@pytest.mark.parametrize(
    ("parameters", "code"),
    [(None, 132001), (3, 132000)],
    ids=["not approved", "another number of parameters"],
)
async def test_cloud_sender_rejects_a_wrong_template_with_meta_s_132xxx_code(
    cloud: FakeCloudAPI, client: httpx.AsyncClient, parameters: int | None, code: int
) -> None:
    if parameters is not None:
        cloud.approve_template("lembrete_horario", "pt_BR", parameters=parameters)

    with pytest.raises(RejectedSend) as caught:
        await cloud_sender(cloud, client).send_template(
            CUSTOMER, "lembrete_horario", "pt_BR", ["Ana Souza", "10:00"]
        )

    assert caught.value.code == code and f"code {code}" in caught.value.detail
    assert cloud.sent_templates == []
