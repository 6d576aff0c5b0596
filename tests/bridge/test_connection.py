"""Evolution's `connection.update` and `qrcode.updated` as `Connection` events."""

from __future__ import annotations

from typing import Any

import pytest

from zapvet.bridge.events import Connection, Ignored, PayloadError
from zapvet.bridge.evolution import parse_evolution
from zapvet.testing.gateways import FakeEvolutionAPI

GATEWAY = FakeEvolutionAPI()  # builds payloads only; never started


def envelope(event: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event": event, "instance": "petshop-centro", "data": data, "apikey": None}


@pytest.mark.parametrize(
    ("state", "reason"), [("open", 200), ("connecting", 200), ("close", 401), ("refused", 428)]
)
def test_connection_update_states_and_reasons(state: str, reason: int) -> None:
    payload = GATEWAY.connection_update("petshop-centro", state, reason=reason)

    assert parse_evolution(payload) == [Connection(state=state, reason=reason)]  # type: ignore[arg-type]


def test_connection_update_from_a_by_events_path() -> None:
    payload = GATEWAY.connection_update("petshop-centro", "close")
    del payload["event"]

    assert parse_evolution(payload, event="connection-update") == [Connection("close", 401)]


def test_connection_update_open_as_evolution_posts_it() -> None:
    # whatsapp.baileys.service.ts: {instance, wuid, profileName, profilePictureUrl, state,
    # statusReason} once the socket opens.
    data = {
        "instance": "petshop-centro",
        "wuid": "5511933334444@s.whatsapp.net",
        "profileName": "Pet Feliz",
        "profilePictureUrl": None,
        "state": "open",
        "statusReason": 200,
    }

    assert parse_evolution(envelope("connection.update", data)) == [Connection("open", 200)]


def test_connection_update_unknown_state_is_ignored() -> None:
    data = {"instance": "petshop-centro", "state": "syncing"}

    (event,) = parse_evolution(envelope("connection.update", data))

    assert isinstance(event, Ignored)
    assert event.details == {"state": "syncing"}


def test_qrcode_updated_means_waiting_for_a_scan() -> None:
    payload = GATEWAY.qrcode_updated("petshop-centro")

    assert parse_evolution(payload) == [Connection("qrcode")]
    assert parse_evolution(payload, event="QRCODE_UPDATED") == [Connection("qrcode")]


def test_qrcode_limit_reached_is_refused() -> None:
    data = {"message": "QR code limit reached, please login again", "statusCode": 500}

    assert parse_evolution(envelope("qrcode.updated", data)) == [Connection("refused", 500)]


def test_qrcode_updated_without_code_or_status_is_a_payload_error() -> None:
    with pytest.raises(PayloadError):
        parse_evolution(envelope("qrcode.updated", {"instance": "petshop-centro"}))
