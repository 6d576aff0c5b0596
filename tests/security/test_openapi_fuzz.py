"""schemathesis against the bridge's own OpenAPI, completed with the webhook contract.

FastAPI documents only the paths (the routes read the raw request), so the schema is the
app's `openapi()` plus what DESIGN §5 promises: the JSON bodies, the auth headers, the
verification query and every answer (200, or 401/403/404/413/422/503 with a JSON error),
and the calendar feeds (issue 19: text/calendar, or a JSON 404).
The bridge is served on loopback over the module's two-shop database; every case must
avoid a 500, conform to that schema, and a refused webhook must leave every table as it
was. Some cases carry the right token, and Cloud bodies marked "sign" are signed, so the
fuzzing reaches the parsers and the database, not only the auth checks.
"""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from tests.security.conftest import (
    A_CLOUD,
    A_INSTANCE,
    A_SECRET,
    A_TOKEN,
    A_VERIFY,
    B_INSTANCE,
    Bridge,
    row_counts,
)
from zapvet.bridge.app import BridgeState, build_app
from zapvet.testing.gateways import FakeCloudAPI

#: Cases run per operation (printed at the end of the module with `-s`).
CASES: Counter[str] = Counter()
SIGNATURE = "X-Hub-Signature-256"
SIGN_ME = "sign"
#: ZAPVET_SECURITY_DEEP=1 adds schemathesis' coverage phase and many more examples.
DEEP = os.environ.get("ZAPVET_SECURITY_DEEP") == "1"
#: Fuzzing examples per operation (8 operations).
MAX_EXAMPLES = 150 if DEEP else 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "additionalProperties": False,
}
_ACCEPTED = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"const": "ok"},
        **{
            k: {"type": "integer", "minimum": 0}
            for k in ("stored", "duplicates", "ignored", "updated")
        },
    },
    "additionalProperties": False,
}
_TEXT = {"type": "string", "maxLength": 300}
_EVOLUTION_BODY = {
    "type": "object",
    "properties": {
        "event": {"anyOf": [
            {"enum": ["messages.upsert", "messages.update", "messages.edited",
                      "messages.delete", "send.message", "MESSAGES_UPSERT"]},
            _TEXT,
        ]},
        "instance": {"enum": [A_INSTANCE, B_INSTANCE]},
        "data": {
            "type": "object",
            "properties": {
                "key": {
                    "type": "object",
                    "properties": {
                        "remoteJid": {"anyOf": [
                            {"enum": ["5511987654321@s.whatsapp.net", "203948571726354@lid",
                                      "120363025246125486@g.us", "status@broadcast"]},
                            _TEXT,
                        ]},
                        "remoteJidAlt": _TEXT,
                        "fromMe": {"type": "boolean"},
                        "id": _TEXT,
                    },
                },
                "pushName": _TEXT,
                "message": {
                    "type": "object",
                    "properties": {
                        "conversation": _TEXT,
                        "extendedTextMessage": {"type": "object", "properties": {"text": _TEXT}},
                        "reactionMessage": {"type": "object"},
                        "protocolMessage": {"type": "object"},
                    },
                },
                "messageTimestamp": {"anyOf": [{"type": "integer"}, _TEXT]},
                "status": _TEXT,
                "keyId": _TEXT,
            },
        },
    },
}  # fmt: skip
_CLOUD_MESSAGE = {
    "type": "object",
    "properties": {
        "from": _TEXT,
        "id": _TEXT,
        "timestamp": {"anyOf": [{"type": "integer"}, _TEXT]},
        "type": {"enum": ["text", "image", "reaction", "edit", "revoke", "interactive", "button"]},
        "text": {"type": "object", "properties": {"body": _TEXT}},
    },
}
_CLOUD_BODY = {
    "type": "object",
    "properties": {
        "object": {"anyOf": [{"const": "whatsapp_business_account"}, _TEXT]},
        "entry": {"type": "array", "maxItems": 2, "items": {
            "type": "object",
            "properties": {"id": _TEXT, "changes": {"type": "array", "maxItems": 2, "items": {
                "type": "object",
                "properties": {
                    "field": {"enum": ["messages", "smb_message_echoes", "account_update"]},
                    "value": {"type": "object", "properties": {
                        "metadata": {"type": "object", "properties": {
                            "phone_number_id": {"anyOf": [{"const": A_CLOUD}, _TEXT]},
                        }},
                        "contacts": {"type": "array", "maxItems": 2, "items": {"type": "object"}},
                        "messages": {"type": "array", "maxItems": 2, "items": _CLOUD_MESSAGE},
                        "statuses": {"type": "array", "maxItems": 2, "items": {"type": "object"}},
                    }},
                },
            }}},
        }},
    },
}  # fmt: skip


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answers(ok: dict[str, Any], *refusals: int) -> dict[str, Any]:
    answers: dict[str, Any] = {"200": {"description": "accepted", "content": ok}}
    for status in refusals:
        answers[str(status)] = {"description": "refused", "content": _json(_ERROR)}
    return answers


def _header(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": schema}


def contract_schema() -> dict[str, Any]:
    """The app's OpenAPI, completed with DESIGN §5 (bodies, headers, query, answers)."""

    async def unused() -> BridgeState:
        raise AssertionError("the schema is read without starting the app")

    spec = copy.deepcopy(build_app(unused).openapi())
    paths = spec["paths"]
    instance = {"anyOf": [{"enum": [A_INSTANCE, B_INSTANCE]}, {"type": "string"}]}
    token = _header("X-Webhook-Token", {"anyOf": [{"const": A_TOKEN}, _TEXT]})
    for path in ("/webhooks/evolution/{instance}", "/webhooks/evolution/{instance}/{event}"):
        operation = paths[path]["post"]
        for parameter in operation["parameters"]:
            if parameter["name"] == "instance":
                parameter["schema"] = instance
        operation["parameters"].append(token)
        operation["requestBody"] = {"required": True, "content": _json(_EVOLUTION_BODY)}
        operation["responses"] = _answers(_json(_ACCEPTED), 401, 404, 413, 422, 503)
    cloud = paths["/webhooks/cloud"]
    cloud["post"]["parameters"] = [_header(SIGNATURE, {"anyOf": [{"const": SIGN_ME}, _TEXT]})]
    cloud["post"]["requestBody"] = {"required": True, "content": _json(_CLOUD_BODY)}
    cloud["post"]["responses"] = _answers(_json(_ACCEPTED), 401, 404, 413, 422, 503)
    # The examples phase sends these first: the right token, and one that is not ASCII.
    cloud["get"]["parameters"] = [
        {"name": name, "in": "query", "required": False, "schema": schema, "examples": examples}
        for name, schema, examples in (
            ("hub.mode", {"anyOf": [{"const": "subscribe"}, _TEXT]}, {"s": {"value": "subscribe"}}),
            (
                "hub.verify_token",
                {"anyOf": [{"const": A_VERIFY}, _TEXT]},
                {"right": {"value": A_VERIFY}, "accented": {"value": "verificação"}},
            ),
            ("hub.challenge", _TEXT, {"c": {"value": "1158201444"}}),
        )
    ]
    cloud["get"]["responses"] = _answers({"text/plain": {"schema": {"type": "string"}}}, 403)
    ready = {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}}
    paths["/readyz"]["get"]["responses"] = {
        "200": {"description": "ready", "content": _json(ready)},
        "503": {"description": "not ready", "content": _json(ready)},
    }
    paths["/stats"]["get"]["responses"] = _answers(_json({"type": "object"}))
    paths["/metrics"]["get"]["responses"] = _answers({"text/plain": {"schema": {"type": "string"}}})
    # Issue 19: a calendar feed by its secret token; an unknown token is a JSON 404.
    feed = {"text/calendar; charset=utf-8": {"schema": {"type": "string"}}}
    paths["/calendar/{token}.ics"]["get"]["responses"] = _answers(feed, 404)
    spec.get("components", {}).get("schemas", {}).clear()
    return spec


schema = schemathesis.openapi.from_dict(
    contract_schema(),
    config=schemathesis.Config.from_dict(
        {
            # The coverage phase's boundary values are what found the verification crash;
            # on the webhook POSTs they cost 300 cases each, so only deep runs keep them.
            "operations": [
                {"include-operation-id": operation, "phases": {"coverage": {"enabled": DEEP}}}
                for operation in (
                    "evolution_webhook_webhooks_evolution__instance__post",
                    "evolution_event_webhook_webhooks_evolution__instance___event__post",
                    "cloud_webhook_webhooks_cloud_post",
                )
            ],
        }
    ),
)


@pytest.fixture(scope="module", autouse=True)
def report_cases() -> Iterator[None]:
    yield
    print(f"\nschemathesis: {sum(CASES.values())} cases", dict(CASES))  # noqa: T201


def signed_call(case: Any, bridge: Bridge) -> httpx.Response:
    """POST a Cloud case with a valid signature over the exact bytes sent."""
    body = json.dumps(case.body).encode()
    headers = {**case.headers, SIGNATURE: FakeCloudAPI.sign(body, A_SECRET)}
    headers["Content-Type"] = "application/json"
    return httpx.post(f"{bridge.origin}/webhooks/cloud", content=body, headers=headers, timeout=30)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_bridge_never_fails_and_keeps_its_contract(
    case: Any, bridge: Bridge, shared_engine: Engine
) -> None:
    CASES[f"{case.method} {case.path}"] += 1
    webhook = case.path.startswith("/webhooks/") and case.method == "POST"
    before = row_counts(shared_engine) if webhook else None
    if (
        case.path == "/webhooks/cloud"
        and case.method == "POST"
        and case.headers.get(SIGNATURE) == SIGN_ME
    ):
        response: Any = signed_call(case, bridge)
        case.validate_response(response, checks=CHECKS)
    else:
        response = case.call_and_validate(base_url=bridge.origin, checks=CHECKS)
    if webhook and response.status_code >= 400:
        assert row_counts(shared_engine) == before, "a refused webhook wrote rows"
