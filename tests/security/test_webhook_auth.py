"""Webhook authentication: every forged, misaddressed or unstorable request gets a JSON 4xx
and leaves every table exactly as it was; a replay is a harmless duplicate."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.security.conftest import (
    A_CLOUD,
    A_INSTANCE,
    A_SECRET,
    A_TOKEN,
    A_VERIFY,
    B_CLOUD,
    B_INSTANCE,
    B_SECRET,
    B_TOKEN,
    Bridge,
    World,
    full_snapshot,
    org_snapshot,
    row_counts,
)
from zapvet.bridge.app import MAX_BODY_BYTES
from zapvet.testing.gateways import FakeCloudAPI, FakeEvolutionAPI

CUSTOMER = "5511955554444"
#: Every probe's message has an id of its own, so no probe is a duplicate of another.
_IDS = itertools.count()
EVOLUTION = FakeEvolutionAPI(api_key="unused", instances=[A_INSTANCE, B_INSTANCE])
CLOUD = FakeCloudAPI(access_token="unused", phone_number_ids=[A_CLOUD, B_CLOUD])


@dataclass(frozen=True)
class Probe:
    """One request: where, what body and which headers; the status it must get."""

    path: str
    body: bytes
    headers: Mapping[str, str | bytes]
    status: int


def evolution_body(instance: str = A_INSTANCE, text: str = "Oi", **changes: Any) -> bytes:
    payload = EVOLUTION.incoming(instance, CUSTOMER, text, message_id=f"3EBSEC{next(_IDS):04d}")
    payload["data"].update(changes)
    return json.dumps(payload).encode()


def cloud_payload(phone_number_id: str = A_CLOUD, text: str = "Oi") -> dict[str, Any]:
    return CLOUD.incoming(phone_number_id, CUSTOMER, text, message_id=f"wamid.SEC{next(_IDS):04d}")


def signed(payload: dict[str, Any], secret: str) -> tuple[bytes, Mapping[str, str | bytes]]:
    body = FakeCloudAPI.encode(payload)
    return body, {"X-Hub-Signature-256": FakeCloudAPI.sign(body, secret)}


def two_numbers() -> dict[str, Any]:
    """One body carrying a message for A's number and one for B's."""
    payload = cloud_payload(A_CLOUD)
    other = cloud_payload(B_CLOUD)["entry"][0]["changes"][0]
    payload["entry"][0]["changes"].append(other)
    return payload


def _cloud_probes() -> dict[str, Probe]:
    body, good = signed(cloud_payload(), A_SECRET)
    _, b_signed = signed(cloud_payload(), B_SECRET)
    altered = FakeCloudAPI.encode(cloud_payload(text="Oi, alterado"))
    unknown, unknown_sig = signed(cloud_payload("999999999999999"), A_SECRET)
    to_b, to_b_sig = signed(cloud_payload(B_CLOUD), A_SECRET)
    both, both_sig = signed(two_numbers(), A_SECRET)
    digest = str(good["X-Hub-Signature-256"]).removeprefix("sha256=")
    return {
        "unsigned": Probe("/webhooks/cloud", body, {}, 401),
        "empty signature": Probe("/webhooks/cloud", body, {"X-Hub-Signature-256": ""}, 401),
        "signed with the other shop's secret": Probe("/webhooks/cloud", body, b_signed, 401),
        "signature of another body (replayed header)": Probe("/webhooks/cloud", altered, good, 401),
        "digest without sha256= prefix": Probe(
            "/webhooks/cloud", body, {"X-Hub-Signature-256": digest}, 401
        ),
        "sha1 prefix": Probe(
            "/webhooks/cloud", body, {"X-Hub-Signature-256": f"sha1={digest}"}, 401
        ),
        "upper-case digest": Probe(
            "/webhooks/cloud", body, {"X-Hub-Signature-256": f"sha256={digest.upper()}"}, 401
        ),
        "non-ASCII signature": Probe(
            "/webhooks/cloud", body, {"X-Hub-Signature-256": "sha256=é".encode("latin-1")}, 401
        ),
        "unknown phone_number_id": Probe("/webhooks/cloud", unknown, unknown_sig, 404),
        "B's number signed with A's secret": Probe("/webhooks/cloud", to_b, to_b_sig, 401),
        "A's and B's numbers signed with A's secret": Probe("/webhooks/cloud", both, both_sig, 401),
        "text with a NUL character": Probe(
            "/webhooks/cloud", *signed(cloud_payload(text="oi\x00"), A_SECRET), 422
        ),
        "text with a lone surrogate": Probe(
            "/webhooks/cloud", *signed(cloud_payload(text="oi\udfff"), A_SECRET), 422
        ),
        "NUL in the phone_number_id": Probe(
            "/webhooks/cloud", *signed(cloud_payload("1065\x00"), A_SECRET), 422
        ),
        "sender id longer than any phone": Probe(
            "/webhooks/cloud",
            *signed(CLOUD.incoming(A_CLOUD, "5" * 40, "oi", message_id="wamid.LONG"), A_SECRET),
            422,
        ),
        "not JSON": Probe("/webhooks/cloud", b"{", good, 422),
        "nested past the parser's depth": Probe("/webhooks/cloud", b"[" * 100_000, good, 422),
    }


def _evolution_probes() -> dict[str, Probe]:
    path_a, path_b = f"/webhooks/evolution/{A_INSTANCE}", f"/webhooks/evolution/{B_INSTANCE}"
    body = evolution_body()
    token = {"X-Webhook-Token": A_TOKEN}
    return {
        "no token": Probe(path_a, body, {}, 401),
        "empty token": Probe(path_a, body, {"X-Webhook-Token": ""}, 401),
        "wrong token": Probe(path_a, body, {"X-Webhook-Token": "hook-secreT"}, 401),
        "token prefix": Probe(path_a, body, {"X-Webhook-Token": A_TOKEN[:-1]}, 401),
        "the other shop's token": Probe(path_a, body, {"X-Webhook-Token": B_TOKEN}, 401),
        "A's token on B's instance": Probe(path_b, evolution_body(B_INSTANCE), token, 401),
        "token as apikey only": Probe(path_a, body, {"apikey": A_TOKEN}, 401),
        "non-ASCII token": Probe(path_a, body, {"X-Webhook-Token": "hoók".encode("latin-1")}, 401),
        "wrong token on the by-events path": Probe(
            f"{path_a}/messages-upsert", body, {"X-Webhook-Token": B_TOKEN}, 401
        ),
        "unknown instance": Probe("/webhooks/evolution/nao-existe", body, token, 404),
        "instance in another case": Probe("/webhooks/evolution/PetFeliz", body, token, 404),
        "inactive instance": Probe("/webhooks/evolution/desligada", body, token, 404),
        "NUL in the instance name": Probe("/webhooks/evolution/pet%00feliz", body, token, 422),
        "text with a NUL character": Probe(path_a, evolution_body(text="oi\x00"), token, 422),
        "text with a lone surrogate": Probe(path_a, evolution_body(text="oi\ud800"), token, 422),
        "push name with a NUL character": Probe(
            path_a, evolution_body(pushName="Ana\x00"), token, 422
        ),
        "push name longer than its column": Probe(
            path_a, evolution_body(pushName="n" * 300), token, 422
        ),
        "message id longer than its column": Probe(
            path_a,
            json.dumps(
                EVOLUTION.incoming(A_INSTANCE, CUSTOMER, "oi", message_id="x" * 200)
            ).encode(),
            token,
            422,
        ),
        "phone longer than its column": Probe(
            path_a,
            json.dumps(
                EVOLUTION.incoming(A_INSTANCE, "5" * 70, "oi", message_id="3EBLONG")
            ).encode(),
            token,
            422,
        ),
        "not JSON": Probe(path_a, b"not json", token, 422),
        "nested past the parser's depth": Probe(path_a, b"[" * 100_000, token, 422),
        "body over the size limit": Probe(path_a, b" " * (MAX_BODY_BYTES + 1), token, 413),
    }


PROBES: dict[str, Probe] = {
    **{f"evolution: {name}": probe for name, probe in _evolution_probes().items()},
    **{f"cloud: {name}": probe for name, probe in _cloud_probes().items()},
}
A_CLOUD_2 = "106540352242999"


@pytest.fixture(scope="module")
def inactive(shared_engine: Engine, world: World) -> None:
    """An inactive Evolution instance of A with the right token, and a second Cloud number of
    A under the same Meta app (same secret)."""
    insert = text(
        "INSERT INTO whatsapp_instances (organization_id, provider, instance, api_url,"
        " webhook_token, app_secret, is_active, created_at, updated_at) VALUES (:org,"
        " :provider, :instance, 'http://127.0.0.1:9', :token, :secret, :active, now(), now())"
    )
    with shared_engine.begin() as conn:
        conn.execute(
            insert,
            {"org": world.a.org_id, "provider": "evolution", "instance": "desligada",
             "token": A_TOKEN, "secret": None, "active": False},
        )  # fmt: skip
        conn.execute(
            insert,
            {"org": world.a.org_id, "provider": "cloud", "instance": A_CLOUD_2,
             "token": None, "secret": A_SECRET, "active": True},
        )  # fmt: skip


def post(bridge: Bridge, probe: Probe) -> httpx.Response:
    merged = {"Content-Type": "application/json", **probe.headers}
    headers = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in merged.items()]
    return httpx.post(
        f"{bridge.origin}{probe.path}", content=probe.body, headers=headers, timeout=30
    )


@pytest.mark.parametrize("name", list(PROBES))
def test_refused_webhooks_get_a_json_4xx_and_write_nothing(
    name: str, bridge: Bridge, shared_engine: Engine, inactive: None
) -> None:
    probe = PROBES[name]
    before = full_snapshot(shared_engine)
    counts = row_counts(shared_engine)
    response = post(bridge, probe)
    assert response.status_code == probe.status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and all(isinstance(v, str) for v in body.values())
    assert row_counts(shared_engine) == counts
    assert full_snapshot(shared_engine) == before


def test_the_same_requests_properly_authenticated_are_accepted(
    bridge: Bridge, shared_engine: Engine, world: World
) -> None:
    """The control: the probes fail for their flaw, not because the requests never work."""
    token = {"X-Webhook-Token": A_TOKEN}
    ok = post(bridge, Probe(f"/webhooks/evolution/{A_INSTANCE}", evolution_body(), token, 200))
    assert ok.status_code == 200 and ok.json()["stored"] == 1
    cloud = post(bridge, Probe("/webhooks/cloud", *signed(cloud_payload(), A_SECRET), 200))
    assert cloud.status_code == 200 and cloud.json()["stored"] == 1
    b_cloud = post(bridge, Probe("/webhooks/cloud", *signed(cloud_payload(B_CLOUD), B_SECRET), 200))
    assert b_cloud.status_code == 200 and b_cloud.json()["stored"] == 1


def test_a_replayed_webhook_is_a_duplicate_that_writes_nothing(
    bridge: Bridge, shared_engine: Engine, world: World
) -> None:
    token = {"X-Webhook-Token": A_TOKEN}
    key = {"remoteJid": f"{CUSTOMER}@s.whatsapp.net", "fromMe": False, "id": "3EBREPLAY01"}
    first = evolution_body(text="Oi de novo", key=key)
    path = f"/webhooks/evolution/{A_INSTANCE}"
    assert post(bridge, Probe(path, first, token, 200)).json()["stored"] == 1
    before = full_snapshot(shared_engine)
    for target in (path, f"{path}/messages-upsert"):
        again = post(bridge, Probe(target, first, token, 200))
        assert again.status_code == 200 and again.json()["duplicates"] == 1
    body, signature = signed(cloud_payload(text="Replay"), A_SECRET)
    post(bridge, Probe("/webhooks/cloud", body, signature, 200))
    before = full_snapshot(shared_engine)
    replay = post(bridge, Probe("/webhooks/cloud", body, signature, 200))
    assert replay.status_code == 200 and replay.json()["duplicates"] == 1
    snapshot = full_snapshot(shared_engine)
    # Only the contact's and conversation's last-seen stamps may move on a replay.
    for table in ("messages", "contact_identities", "appointments", "pets"):
        assert snapshot[table] == before[table], table


def test_a_body_naming_another_instance_lands_only_where_the_token_points(
    bridge: Bridge, shared_engine: Engine, world: World
) -> None:
    """The body's own `instance` field is not trusted: path and token decide, B is untouched."""
    payload = EVOLUTION.incoming(A_INSTANCE, "5511944443333", "Oi", message_id="3EBMISMATCH1")
    payload["instance"] = B_INSTANCE
    before_b = org_snapshot(shared_engine, world.b.org_id)
    path = f"/webhooks/evolution/{A_INSTANCE}"
    response = post(
        bridge, Probe(path, json.dumps(payload).encode(), {"X-Webhook-Token": A_TOKEN}, 200)
    )
    assert response.status_code == 200 and response.json()["stored"] == 1
    assert org_snapshot(shared_engine, world.b.org_id) == before_b
    with shared_engine.connect() as conn:
        org = conn.execute(
            text("SELECT organization_id FROM messages WHERE whatsapp_message_id = '3EBMISMATCH1'")
        ).scalar_one()
    assert org == world.a.org_id


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"hub.mode": "subscribe", "hub.verify_token": A_VERIFY, "hub.challenge": "42"}, 200),
        ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "42"}, 403),
        ({"hub.mode": "subscribe", "hub.challenge": "42"}, 403),
        ({"hub.mode": "unsubscribe", "hub.verify_token": A_VERIFY, "hub.challenge": "42"}, 403),
        ({"hub.mode": "subscribe", "hub.verify_token": "é", "hub.challenge": "42"}, 403),
        ({"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "42"}, 403),
    ],
)
def test_cloud_verification_answers_only_the_right_token(
    params: dict[str, str], status: int, bridge: Bridge, shared_engine: Engine
) -> None:
    counts = row_counts(shared_engine)
    response = httpx.get(f"{bridge.origin}/webhooks/cloud", params=params, timeout=30)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.text == "42"
    else:
        assert set(response.json()) == {"error", "detail"}
    assert row_counts(shared_engine) == counts


def test_a_batch_is_stored_whole_or_not_at_all(
    bridge: Bridge, shared_engine: Engine, world: World
) -> None:
    """An Evolution batch whose second message cannot be stored leaves the first unstored."""
    good = EVOLUTION.incoming(A_INSTANCE, "5511933332222", "Oi", message_id="3EBBATCH01")
    bad = copy.deepcopy(good)
    bad["data"]["key"]["id"] = "3EBBATCH02"
    bad["data"]["message"]["conversation"] = "oi\x00"
    payload = {**good, "data": [good["data"], bad["data"]]}
    counts = row_counts(shared_engine)
    path = f"/webhooks/evolution/{A_INSTANCE}"
    response = post(
        bridge, Probe(path, json.dumps(payload).encode(), {"X-Webhook-Token": A_TOKEN}, 422)
    )
    assert response.status_code == 422
    assert row_counts(shared_engine) == counts


def test_a_cloud_body_for_two_numbers_is_stored_whole_or_not_at_all(
    bridge: Bridge, shared_engine: Engine, world: World, inactive: None
) -> None:
    """Two of A's numbers in one signed body; the second message cannot be stored."""
    payload = cloud_payload(A_CLOUD, text="Primeira")
    second = CLOUD.incoming(A_CLOUD_2, "5511922221111", "oi\x00", message_id="wamid.SECOND")
    payload["entry"][0]["changes"].append(second["entry"][0]["changes"][0])
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = "wamid.FIRST"
    counts = row_counts(shared_engine)
    response = post(bridge, Probe("/webhooks/cloud", *signed(payload, A_SECRET), 422))
    assert response.status_code == 422, response.text
    assert row_counts(shared_engine) == counts
