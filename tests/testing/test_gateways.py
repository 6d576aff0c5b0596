"""The fake gateways: inbound payload builders, signatures, and the send endpoints' wire format."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from zapvet.testing.gateways import FakeCloudAPI, FakeEvolutionAPI, SentText

# Research notes (../shared/research/whatsapp.md) §4.5 and §5.4, verbatim.
EVOLUTION_TEXT = json.loads("""
{"event":"messages.upsert","instance":"petshop-centro",
 "data":{"key":{"remoteJid":"5511987654321@s.whatsapp.net","fromMe":false,"id":"A5561E44C2A63682E4295B52F484C14E"},
  "pushName":"Ana Souza","status":"DELIVERY_ACK",
  "message":{"conversation":"Oi! Tem horário pra banho e tosa amanhã?","messageContextInfo":{"deviceListMetadataVersion":2}},
  "messageType":"conversation","messageTimestamp":1760025600,"instanceId":"b1c2d3e4-0000-4a1b-9c2d-000000000001","source":"android"},
 "destination":"https://bot.example.com/webhooks/evolution","date_time":"2025-10-09T13:00:01.123Z",
 "sender":"5511933334444@s.whatsapp.net","server_url":"https://evo.example.com","apikey":"B6D711FCDE4D4FD5936544120E713976"}
""")  # noqa: E501
EVOLUTION_LID_KEY = json.loads("""
{"remoteJid":"203948571726354@lid","remoteJidAlt":"553188887777@s.whatsapp.net","fromMe":false,
 "id":"3A1B2C3D4E5F60718293","participant":"","addressingMode":"lid"}
""")
CLOUD_TEXT = json.loads("""
{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{
  "messaging_product":"whatsapp","metadata":{"display_phone_number":"551133334444","phone_number_id":"106540352242922"},
  "contacts":[{"profile":{"name":"Ana Souza"},"wa_id":"5511987654321","user_id":"BR.13491208655302741918"}],
  "messages":[{"from":"5511987654321","id":"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBRjQ=","timestamp":"1760025600",
               "type":"text","text":{"body":"Oi! Tem horário pra banho e tosa amanhã?"}}]}}]}]}
""")  # noqa: E501
#: 1760025600, the examples' timestamp.
MORNING = datetime(2025, 10, 9, 13, 0, tzinfo=ZoneInfo("America/Sao_Paulo"))


def shape(value: Any) -> Any:
    """The keys and value types of a JSON document, without the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def test_evolution_incoming_has_the_shape_of_a_real_upsert() -> None:
    fake = FakeEvolutionAPI()

    payload = fake.incoming("petshop-centro", "5511987654321", "Oi! Tem horário?")

    expected = shape(EVOLUTION_TEXT)
    expected["apikey"] = "NoneType"  # null unless Evolution is told to expose instance keys
    assert shape(payload) == expected


def test_evolution_incoming_carries_the_given_message() -> None:
    fake = FakeEvolutionAPI(number="5511933334444")

    payload = fake.incoming(
        "petshop-centro",
        "5511987654321",
        "Oi! Tem horário pra banho e tosa amanhã?",
        message_id="A5561E44C2A63682E4295B52F484C14E",
        push_name="Ana Souza",
        timestamp=MORNING,
    )

    for key in ("event", "instance", "sender"):
        assert payload[key] == EVOLUTION_TEXT[key]
    data, example = payload["data"], EVOLUTION_TEXT["data"]
    for key in ("key", "pushName", "status", "message", "messageType", "messageTimestamp"):
        assert data[key] == example[key]
    assert payload["date_time"].endswith("Z")


def test_evolution_incoming_addresses_a_lid_contact_like_evolution_2_3_5() -> None:
    fake = FakeEvolutionAPI()

    payload = fake.incoming(
        "petshop-centro", "553188887777", "Pode ser às 15h?", lid="203948571726354"
    )

    key = payload["data"]["key"]
    assert shape(key) == shape(EVOLUTION_LID_KEY)
    assert key["remoteJid"] == "203948571726354@lid"
    assert key["remoteJidAlt"] == "553188887777@s.whatsapp.net"


def test_evolution_incoming_marks_messages_typed_on_the_business_phone() -> None:
    payload = FakeEvolutionAPI().incoming(
        "petshop-centro", "5511987654321", "Deixa comigo", from_me=True
    )

    assert payload["data"]["key"]["fromMe"] is True
    assert payload["data"]["key"]["id"].startswith("3EB0")
    assert payload["data"]["pushName"] == "Você"


def test_evolution_incoming_makes_a_fresh_id_each_time() -> None:
    fake = FakeEvolutionAPI()

    ids = {
        fake.incoming("petshop-centro", "5511987654321", "oi")["data"]["key"]["id"]
        for _ in range(5)
    }

    assert len(ids) == 5


def test_cloud_incoming_has_the_shape_of_a_real_messages_webhook() -> None:
    payload = FakeCloudAPI().incoming("106540352242922", "5511987654321", "Oi! Tem horário?")

    assert shape(payload) == shape(CLOUD_TEXT)


def test_cloud_incoming_carries_the_given_message() -> None:
    fake = FakeCloudAPI(display_phone_number="551133334444", waba_id="102290129340398")

    payload = fake.incoming(
        "106540352242922",
        "5511987654321",
        "Oi! Tem horário pra banho e tosa amanhã?",
        message_id="wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBRjQ=",
        timestamp=1760025600,
        user_id="BR.13491208655302741918",
    )

    assert payload == CLOUD_TEXT


def test_cloud_incoming_gives_each_contact_one_stable_bsuid() -> None:
    fake = FakeCloudAPI()

    first = fake.incoming("106540352242922", "5511987654321", "oi")
    again = fake.incoming("106540352242922", "5511987654321", "oi de novo")
    other = fake.incoming("106540352242922", "553188887777", "oi")

    def user_id(payload: dict[str, Any]) -> str:
        return str(payload["entry"][0]["changes"][0]["value"]["contacts"][0]["user_id"])

    assert user_id(first) == user_id(again) != user_id(other)
    assert user_id(first).startswith("BR.")
    assert first["entry"][0]["changes"][0]["value"]["messages"][0]["id"].startswith("wamid.")


def test_cloud_sign_is_the_hmac_sha256_of_the_raw_body() -> None:
    body = FakeCloudAPI.encode(CLOUD_TEXT)

    signature = FakeCloudAPI.sign(body, "app-secret")

    expected = hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    assert FakeCloudAPI.sign(body + b" ", "app-secret") != signature


def test_cloud_encode_escapes_non_ascii_like_meta() -> None:
    body = FakeCloudAPI.encode(CLOUD_TEXT)

    assert b"hor\\u00e1rio" in body
    assert json.loads(body) == CLOUD_TEXT


def test_fakes_have_no_base_url_before_start() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _ = FakeEvolutionAPI().base_url
    with pytest.raises(RuntimeError, match="start"):
        _ = FakeCloudAPI().base_url


def test_evolution_fake_answers_errors_in_evolution_shape() -> None:
    with FakeEvolutionAPI(api_key="right") as fake:
        url = f"{fake.base_url}/message/sendText/petshop-centro"
        body = {"number": "5511987654321", "text": "oi"}
        unauthorized = httpx.post(url, json=body, headers={"apikey": "wrong"})
        unknown = httpx.post(f"{fake.base_url}/message/sendText/outra", json=body)
        invalid = httpx.post(url, json={"number": "5511987654321"}, headers={"apikey": "right"})

    assert unauthorized.status_code == 401
    assert unauthorized.json() == {
        "status": 401,
        "error": "Unauthorized",
        "response": {"message": "Unauthorized"},
    }
    assert unknown.status_code == 404
    assert unknown.json()["response"]["message"] == ['The "outra" instance does not exist']
    assert invalid.status_code == 400
    assert invalid.json()["response"]["message"] == ['instance requires property "text"']
    assert len(fake.requests) == 3
    assert fake.sent == []


def test_evolution_fake_answers_201_with_the_sent_message() -> None:
    seen: list[SentText] = []
    with FakeEvolutionAPI(api_key="k", on_send=seen.append) as fake:
        response = httpx.post(
            f"{fake.base_url}/message/sendText/petshop-centro",
            json={"number": "5511987654321", "text": "Tudo certo!"},
            headers={"apikey": "k"},
        )

    assert response.status_code == 201
    answer = response.json()
    assert answer["key"]["remoteJid"] == "5511987654321@s.whatsapp.net"
    assert answer["key"]["fromMe"] is True
    assert answer["message"] == {"conversation": "Tudo certo!"}
    assert (answer["status"], answer["messageType"], answer["source"]) == (
        "PENDING",
        "conversation",
        "web",
    )
    assert isinstance(answer["messageTimestamp"], int)
    assert seen == fake.sent == [SentText("5511987654321", "Tudo certo!", answer["key"]["id"])]


def test_cloud_fake_answers_in_graph_api_shape() -> None:
    with FakeCloudAPI(access_token="t", phone_number_ids={"42"}) as fake:
        url = f"{fake.base_url}/42/messages"
        text = {"type": "text", "text": {"body": "oi"}}
        accepted = httpx.post(
            url,
            json={"messaging_product": "whatsapp", "to": "5511987654321", **text},
            headers={"authorization": "Bearer t"},
        )
        invalid = httpx.post(
            url, json={"to": "5511987654321", **text}, headers={"authorization": "Bearer t"}
        )
        unauthorized = httpx.post(url, json={}, headers={"authorization": "Bearer nope"})

    assert accepted.status_code == 200
    answer = accepted.json()
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": "5511987654321", "wa_id": "5511987654321"}]
    assert answer["messages"][0]["message_status"] == "accepted"
    assert invalid.status_code == 400
    assert invalid.json()["error"]["code"] == 100
    assert (
        invalid.json()["error"]["message"] == "(#100) The parameter messaging_product is required."
    )
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["type"] == "OAuthException"
    assert unauthorized.json()["error"]["code"] == 190
    assert [sent.text for sent in fake.sent] == ["oi"]


def test_fake_faults_are_played_in_order_then_normal_service_resumes() -> None:
    with FakeCloudAPI(access_token="t") as fake:
        fake.fail_next(500, times=2)
        fake.fail_next(429)
        fake.stall_next(0.0)
        url = f"{fake.base_url}/106540352242922/messages"
        body = {"messaging_product": "whatsapp", "to": "5511987654321", "text": {"body": "oi"}}
        statuses = [
            httpx.post(url, json=body, headers={"authorization": "Bearer t"}).status_code
            for _ in range(5)
        ]

    assert statuses == [500, 500, 429, 200, 200]
    assert len(fake.sent) == 2
    assert len(fake.requests) == 5
