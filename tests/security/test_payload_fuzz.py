"""hypothesis against the payload parsers and, through HTTP, against the whole bridge.

Payloads start from the real shapes (the research examples of tests/bridge) and get hostile
values where the parsers and the database are weakest: NUL and lone surrogates, strings
longer than their columns, huge numbers, NaN, deep nesting, missing keys. The parsers must
answer with events or their own `PayloadError`; the HTTP route, authenticated, must answer
200 or a JSON 4xx, never a 500, and a refused payload must leave every table as it was.
Runs are derandomized, so CI sees the same examples every time.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from tests.bridge import test_cloud, test_evolution
from tests.security.conftest import A_CLOUD, A_INSTANCE, A_SECRET, A_TOKEN, Bridge, row_counts
from zapvet.bridge.cloud import parse_cloud
from zapvet.bridge.events import Delete, Edit, Ignored, Inbound, PayloadError, Reaction, Status
from zapvet.bridge.evolution import parse_evolution
from zapvet.testing.gateways import FakeCloudAPI, FakeEvolutionAPI

DEEP = os.environ.get("ZAPVET_SECURITY_DEEP") == "1"
PARSER_EXAMPLES = 2000 if DEEP else 100
HTTP_EXAMPLES = 500 if DEEP else 40
FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
#: What the probes ran and what the bridge answered (printed at the end of the module).
SEEN: Counter[str] = Counter()
EVENTS = Inbound | Edit | Delete | Reaction | Status | Ignored

_EVOLUTION = FakeEvolutionAPI(api_key="unused", instances=[A_INSTANCE])
_CLOUD = FakeCloudAPI(access_token="unused", phone_number_ids=[A_CLOUD])
EVOLUTION_EXAMPLES: list[Callable[[], Any]] = [
    *test_evolution.EXAMPLES,
    lambda: _EVOLUTION.incoming(A_INSTANCE, "5511977776666", "Oi", lid="203948571726354"),
    lambda: _EVOLUTION.incoming(A_INSTANCE, "5511977776666", "Sou eu", from_me=True),
]
CLOUD_EXAMPLES: list[Callable[[], Any]] = [
    *test_cloud.EXAMPLES,
    lambda: _CLOUD.incoming(A_CLOUD, "5511977776666", "Oi"),
]

# -- hostile values -------------------------------------------------------------------------

HOSTILE_TEXT = st.one_of(
    # What PostgreSQL cannot store (NUL, lone surrogates), and what is merely odd.
    st.sampled_from(["\x00", "oi\x00", "\ud800", "a\udfffb"]),
    st.sampled_from(["", "\u202e", "😀" * 70, "a@b@c"]),
    st.text(min_size=129, max_size=400),  # longer than ids (128), names (200), phones (32)
    st.builds(
        lambda user, server: f"{user}@{server}",
        st.text("0123456789", min_size=1, max_size=80),
        st.sampled_from(["s.whatsapp.net", "lid", "c.us", "g.us", "broadcast", "hosted.lid"]),
    ),
    st.text(max_size=20),
)
HOSTILE_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    HOSTILE_TEXT,
)
HOSTILE_JSON = st.recursive(
    HOSTILE_LEAF,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(HOSTILE_TEXT, children, max_size=3)
    ),
    max_leaves=12,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict | list):
        steps = value.items() if isinstance(value, dict) else enumerate(value)
        for step, child in steps:
            found += _paths(child, (*path, step))
    return found


def _set(document: Any, path: tuple[Any, ...], value: Any = ...) -> Any:
    if not path:
        return value
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


def _strings(value: Any) -> list[tuple[Any, ...]]:
    return [path for path in _paths(value) if isinstance(_get(value, path), str)]


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


@st.composite
def hostile(draw: st.DrawFn, examples: list[Callable[[], Any]]) -> Any:
    """A real payload with 1–3 changes: mostly a string (an id, a JID, a name, a text)
    swapped for a hostile one, else any node replaced, dropped or nested deep."""
    document = draw(st.sampled_from(examples))()
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["string"] * 5 + ["any", "drop", "nest"]))
        strings = _strings(document)
        if how == "string" and strings:
            document = _set(document, draw(st.sampled_from(strings)), draw(HOSTILE_TEXT))
            continue
        path = draw(st.sampled_from(_paths(document)))
        if how == "drop" and path:
            document = _set(document, path)
        elif how == "nest":
            depth = draw(st.integers(2, 300))  # deeper bodies: see test_webhook_auth
            document = _set(document, path, json.loads("[" * depth + "]" * depth))
        else:
            document = _set(document, path, draw(HOSTILE_JSON))
    return document


# -- the parsers ----------------------------------------------------------------------------


def _answers_or_refuses(parse: Callable[[], list[Any]]) -> None:
    try:
        events = parse()
    except PayloadError as refused:
        assert refused.message
        SEEN["parser refusals"] += 1
    else:
        assert isinstance(events, list)
        SEEN["parser answers"] += 1


@settings(FUZZ, max_examples=PARSER_EXAMPLES)
@given(hostile(EVOLUTION_EXAMPLES), st.sampled_from([None, "messages-upsert", "messages.update"]))
def test_parse_evolution_answers_or_refuses_hostile_payloads(
    payload: Any, event: str | None
) -> None:
    def parse() -> list[Any]:
        events = parse_evolution(payload, event=event)
        assert all(isinstance(e, EVENTS) for e in events)
        return events

    _answers_or_refuses(parse)


@settings(FUZZ, max_examples=PARSER_EXAMPLES)
@given(hostile(CLOUD_EXAMPLES))
def test_parse_cloud_answers_or_refuses_hostile_payloads(payload: Any) -> None:
    def parse() -> list[Any]:
        pairs = parse_cloud(payload)
        assert all(isinstance(key, str) and isinstance(e, EVENTS) for key, e in pairs)
        return pairs

    _answers_or_refuses(parse)


# -- through the bridge ---------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def report_seen() -> Iterator[None]:
    yield
    print("\npayload fuzzing:", dict(sorted(SEEN.items())))  # noqa: T201


def _encode(payload: Any) -> bytes:
    """JSON as a gateway might send it (NaN included; lone surrogates escaped)."""
    return json.dumps(payload, allow_nan=True).encode()


def _check(response: httpx.Response, engine: Engine, before: dict[str, int], kind: str) -> None:
    SEEN[f"{kind} HTTP {response.status_code}"] += 1
    assert response.status_code in (200, 404, 413, 422), response.text
    if response.status_code != 200:
        body = response.json()
        assert set(body) == {"error", "detail"}, body
        assert row_counts(engine) == before, f"refused with {response.status_code} but wrote rows"


@settings(FUZZ, max_examples=HTTP_EXAMPLES)
@given(payload=hostile(EVOLUTION_EXAMPLES), suffix=st.sampled_from(["", "/messages-upsert"]))
def test_the_evolution_route_never_fails_on_hostile_payloads(
    payload: Any, suffix: str, bridge: Bridge, shared_engine: Engine
) -> None:
    before = row_counts(shared_engine)
    response = httpx.post(
        f"{bridge.origin}/webhooks/evolution/{A_INSTANCE}{suffix}",
        content=_encode(payload),
        headers={"Content-Type": "application/json", "X-Webhook-Token": A_TOKEN},
        timeout=30,
    )
    _check(response, shared_engine, before, "evolution")


@settings(FUZZ, max_examples=HTTP_EXAMPLES)
@given(payload=hostile(CLOUD_EXAMPLES))
def test_the_cloud_route_never_fails_on_hostile_payloads(
    payload: Any, bridge: Bridge, shared_engine: Engine
) -> None:
    body = _encode(payload)
    before = row_counts(shared_engine)
    response = httpx.post(
        f"{bridge.origin}/webhooks/cloud",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": FakeCloudAPI.sign(body, A_SECRET),
        },
        timeout=30,
    )
    _check(response, shared_engine, before, "cloud")
