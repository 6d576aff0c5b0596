"""WhatsApp Cloud API webhooks: every message type, statuses, echoes and BSUIDs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zapvet.bridge.cloud import parse_cloud
from zapvet.bridge.events import (
    Delete,
    Edit,
    Event,
    Ignored,
    Inbound,
    PayloadError,
    Reaction,
    Sender,
    Status,
)

# The example payloads of research/whatsapp.md §5.4, verbatim (only re-wrapped).
TEXT = """
{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{
 "field":"messages","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"551133334444","phone_number_id":"106540352242922"},
  "contacts":[{"profile":{"name":"Ana Souza"},"wa_id":"5511987654321",
               "user_id":"BR.13491208655302741918"}],
  "messages":[{"from":"5511987654321","id":"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBRjQ=",
               "timestamp":"1760025600","type":"text",
               "text":{"body":"Oi! Tem horário pra banho e tosa amanhã?"}}]}}]}]}
"""
VOICE = """
{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{
 "field":"messages","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"551133334444","phone_number_id":"106540352242922"},
  "contacts":[{"profile":{"name":"Carlos"},"wa_id":"553188887777","user_id":"BR.58820011"}],
  "messages":[{"from":"553188887777","id":"wamid.HBgMNTUzMTg4ODg3Nzc3FQIAEhgg",
               "timestamp":"1760025800","type":"audio",
   "audio":{"mime_type":"audio/ogg; codecs=opus",
            "sha256":"m04pFf2ERdaopTyFkGPA0+bX3i+YY2dYgVFwOgDLSDI=",
            "id":"1234567890987654","voice":true}}]}}]}]}
"""
LIST_REPLY = """
{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{
 "field":"messages","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"551133334444","phone_number_id":"106540352242922"},
  "contacts":[{"profile":{"name":"Ana Souza"},"wa_id":"5511987654321",
               "user_id":"BR.13491208655302741918"}],
  "messages":[{"context":{"from":"551133334444","id":"wamid.HBgNNTUxMTMzMzM0NDQ0FQIAERgS"},
   "from":"5511987654321",
   "id":"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDZGQjE=","timestamp":"1760025950","type":"interactive",
   "interactive":{"type":"list_reply","list_reply":{"id":"svc_banho_tosa","title":"Banho e tosa",
                  "description":"Porte pequeno"}}}]}}]}]}
"""

NUMBER_ID = "106540352242922"
TEXT_ID = "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBRjQ="
ANA = Sender(phone="5511987654321", bsuid="BR.13491208655302741918", name="Ana Souza")


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def text_example() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(TEXT)
    return payload


def value_of(payload: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = payload["entry"][0]["changes"][0]["value"]
    return value


def with_message(**fields: Any) -> dict[str, Any]:
    """The text example whose message has `fields` instead of its text (None deletes one)."""
    payload = text_example()
    message = value_of(payload)["messages"][0]
    del message["text"]
    for name, field in fields.items():
        if field is None:
            message.pop(name, None)
        else:
            message[name] = field
    return payload


def with_value(**fields: Any) -> dict[str, Any]:
    payload = text_example()
    value = value_of(payload)
    for name, field in fields.items():
        if field is None:
            value.pop(name, None)
        else:
            value[name] = field
    return payload


def only(pairs: list[tuple[str, Event]]) -> Event:
    assert len(pairs) == 1, pairs
    number_id, event = pairs[0]
    assert number_id == NUMBER_ID
    return event


def inbound(**changes: Any) -> Inbound:
    """The text example's event with `changes`."""
    base = Inbound(
        provider_id=TEXT_ID,
        chat_id="5511987654321",
        sender=ANA,
        from_me=False,
        sent_at=at(1760025600),
        kind="text",
        text="Oi! Tem horário pra banho e tosa amanhã?",
    )
    return Inbound(**{**base.__dict__, **changes})


def test_parse_cloud_reads_a_text_message() -> None:
    assert parse_cloud(json.loads(TEXT)) == [(NUMBER_ID, inbound())]


def test_parse_cloud_reads_a_voice_note_from_a_legacy_number() -> None:
    assert parse_cloud(json.loads(VOICE)) == [
        (
            NUMBER_ID,
            Inbound(
                provider_id="wamid.HBgMNTUzMTg4ODg3Nzc3FQIAEhgg",
                chat_id="553188887777",
                sender=Sender(phone="553188887777", bsuid="BR.58820011", name="Carlos"),
                from_me=False,
                sent_at=at(1760025800),
                kind="audio",
                media={
                    "media_id": "1234567890987654",
                    "mimetype": "audio/ogg; codecs=opus",
                    "sha256": "m04pFf2ERdaopTyFkGPA0+bX3i+YY2dYgVFwOgDLSDI=",  # checked on download
                    "voice": True,
                },
            ),
        )
    ]


def test_parse_cloud_reads_a_list_reply_to_our_message() -> None:
    assert parse_cloud(json.loads(LIST_REPLY)) == [
        (
            NUMBER_ID,
            inbound(
                provider_id="wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDZGQjE=",
                sent_at=at(1760025950),
                kind="interactive",
                text="Banho e tosa",
                media={
                    "type": "list_reply",
                    "id": "svc_banho_tosa",
                    "title": "Banho e tosa",
                    "description": "Porte pequeno",
                },
                reply_to="wamid.HBgNNTUxMTMzMzM0NDQ0FQIAERgS",
            ),
        )
    ]


@pytest.mark.parametrize(
    ("fields", "kind", "text", "media"),
    [
        (
            {"type": "image", "image": {"id": "m1", "mime_type": "image/jpeg", "caption": "Thor"}},
            "image",
            "Thor",
            {"media_id": "m1", "mimetype": "image/jpeg"},
        ),
        (
            {"type": "video", "video": {"id": "m2", "mime_type": "video/mp4"}},
            "video",
            "",
            {"media_id": "m2", "mimetype": "video/mp4"},
        ),
        (
            {
                "type": "document",
                "document": {
                    "id": "m3",
                    "mime_type": "application/pdf",
                    "filename": "exames.pdf",
                    "caption": "Exames",
                },
            },
            "document",
            "Exames",
            {"media_id": "m3", "mimetype": "application/pdf", "file_name": "exames.pdf"},
        ),
        (
            {
                "type": "sticker",
                "sticker": {"id": "m4", "mime_type": "image/webp", "animated": False},
            },
            "sticker",
            "",
            {"media_id": "m4", "mimetype": "image/webp", "animated": False},
        ),
        (
            {"type": "audio", "audio": {"id": "m5", "mime_type": "audio/mpeg", "voice": False}},
            "audio",
            "",
            {"media_id": "m5", "mimetype": "audio/mpeg", "voice": False},
        ),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "button_reply",
                    "button_reply": {"id": "sim", "title": "Sim"},
                },
            },
            "interactive",
            "Sim",
            {"type": "button_reply", "id": "sim", "title": "Sim"},
        ),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "nfm_reply",
                    "nfm_reply": {
                        "name": "flow",
                        "body": "Sent",
                        "response_json": '{"pet":"Thor"}',
                    },
                },
            },
            "interactive",
            "Sent",
            {"type": "nfm_reply", "name": "flow", "response_json": '{"pet":"Thor"}'},
        ),
        (
            {"type": "button", "button": {"payload": "CONFIRMAR", "text": "Confirmar"}},
            "interactive",
            "Confirmar",
            {"type": "button", "id": "CONFIRMAR", "title": "Confirmar"},
        ),
        (
            {
                "type": "location",
                "location": {
                    "latitude": -23.5613,
                    "longitude": -46.6565,
                    "name": "Pet Shop Centro",
                    "address": "Av. Paulista, 1000",
                },
            },
            "location",
            "",
            {
                "latitude": -23.5613,
                "longitude": -46.6565,
                "name": "Pet Shop Centro",
                "address": "Av. Paulista, 1000",
            },
        ),
        (
            {
                "type": "contacts",
                "contacts": [
                    {
                        "name": {"formatted_name": "Dra. Paula", "first_name": "Paula"},
                        "phones": [
                            {
                                "phone": "+55 11 95555-6666",
                                "wa_id": "5511955556666",
                                "type": "CELL",
                            },
                            {"phone": "+55 11 3333-4444", "type": "WORK"},
                        ],
                    }
                ],
            },
            "contact",
            "",
            {"contacts": [{"name": "Dra. Paula", "phones": ["5511955556666", "+55 11 3333-4444"]}]},
        ),
        ({"type": "order", "order": {"catalog_id": "1"}}, "other", "", {"type": "order"}),
    ],
)
def test_parse_cloud_reads_every_message_type(
    fields: dict[str, Any], kind: str, text: str, media: dict[str, Any]
) -> None:
    assert only(parse_cloud(with_message(**fields))) == inbound(kind=kind, text=text, media=media)


def test_parse_cloud_reads_reactions_and_their_removal() -> None:
    reaction = {"message_id": "wamid.OURS", "emoji": "👍"}
    expected = Reaction(
        provider_id=TEXT_ID,
        target_id="wamid.OURS",
        chat_id="5511987654321",
        sender=ANA,
        from_me=False,
        emoji="👍",
        sent_at=at(1760025600),
    )
    assert only(parse_cloud(with_message(type="reaction", reaction=reaction))) == expected
    removed = with_message(type="reaction", reaction={"message_id": "wamid.OURS"})
    assert only(parse_cloud(removed)) == Reaction(**{**expected.__dict__, "emoji": ""})


def test_parse_cloud_reads_edits_and_revokes() -> None:
    edit = {
        "original_message_id": "wamid.ORIGINAL",
        "message": {"type": "text", "text": {"body": "Pode ser às 16h?"}},
    }
    assert only(parse_cloud(with_message(type="edit", edit=edit))) == Edit(
        "wamid.ORIGINAL", "5511987654321", "Pode ser às 16h?", at(1760025600)
    )
    revoke = with_message(type="revoke", revoke={"original_message_id": "wamid.ORIGINAL"})
    assert only(parse_cloud(revoke)) == Delete("wamid.ORIGINAL", "5511987654321")


def test_parse_cloud_ignores_system_and_unsupported_messages() -> None:
    system = {
        "body": "User Ana changed from 5511987654321 to 5511911112222",
        "wa_id": "5511911112222",
        "type": "user_changed_number",
    }
    assert only(parse_cloud(with_message(type="system", system=system))) == Ignored(
        "system message",
        {"provider_id": TEXT_ID, "type": "user_changed_number", "body": system["body"]},
    )
    errors = [
        {
            "code": 131051,
            "title": "Message type unknown",
            "message": "Message type unknown",
            "error_data": {"details": "Message type is currently not supported."},
        }
    ]
    unsupported = with_message(type="unsupported", errors=errors)
    assert only(parse_cloud(unsupported)) == Ignored(
        "unsupported message",
        {
            "provider_id": TEXT_ID,
            "error": "131051 Message type unknown: Message type is currently not supported.",
        },
    )


def test_parse_cloud_ignores_group_messages() -> None:
    group = with_message(type="text", text={"body": "Oi grupo"}, group_id="120363041234567890")
    assert only(parse_cloud(group)) == Ignored(
        "group chat", {"group_id": "120363041234567890", "provider_id": TEXT_ID}
    )


def status_payload(**status: Any) -> dict[str, Any]:
    base = {
        "id": "wamid.OURS",
        "status": "read",
        "timestamp": "1760026000",
        "recipient_id": "5511987654321",
    }
    return with_value(messages=None, contacts=None, statuses=[{**base, **status}])


def test_parse_cloud_reads_a_status_callback() -> None:
    assert parse_cloud(status_payload()) == [(NUMBER_ID, Status("wamid.OURS", "read"))]


def test_parse_cloud_reads_a_failed_status_with_its_error() -> None:
    errors = [
        {
            "code": 131047,
            "title": "Re-engagement message",
            "message": "Re-engagement message",
            "error_data": {
                "details": "Message failed to send because more than 24 hours have passed"
            },
        }
    ]
    event = only(parse_cloud(status_payload(status="failed", errors=errors)))
    assert event == Status(
        "wamid.OURS",
        "failed",
        "131047 Re-engagement message: "
        "Message failed to send because more than 24 hours have passed",
    )


def test_parse_cloud_ignores_statuses_it_does_not_track() -> None:
    assert only(parse_cloud(status_payload(status="deleted"))) == Ignored(
        "status not tracked", {"provider_id": "wamid.OURS", "status": "deleted"}
    )


def test_parse_cloud_matches_the_contact_by_wa_id() -> None:
    other = {"profile": {"name": "Bia"}, "wa_id": "5511900001111", "user_id": "BR.1"}
    payload = text_example()
    value_of(payload)["contacts"].insert(0, other)
    assert only(parse_cloud(payload)) == inbound()


def test_parse_cloud_never_borrows_a_lone_contact_naming_someone_else() -> None:
    other = {"profile": {"name": "Bia"}, "wa_id": "5511900001111", "user_id": "BR.1"}
    event = only(parse_cloud(with_value(contacts=[other])))
    assert event == inbound(sender=Sender(phone="5511987654321"))


def test_parse_cloud_uses_a_lone_contact_without_wa_id() -> None:
    contact = {"profile": {"name": "Ana Souza"}, "user_id": "BR.13491208655302741918"}
    assert only(parse_cloud(with_value(contacts=[contact]))) == inbound()


def test_parse_cloud_reads_a_user_known_only_by_bsuid() -> None:
    payload = with_value(
        contacts=[
            {"profile": {"name": "Ana", "username": "@ana"}, "user_id": "BR.1502576394655843"}
        ]
    )
    message = value_of(payload)["messages"][0]
    del message["from"]
    message["from_user_id"] = "BR.1502576394655843"
    assert only(parse_cloud(payload)) == inbound(
        chat_id="BR.1502576394655843", sender=Sender(bsuid="BR.1502576394655843", name="Ana")
    )


def echo_payload(**echo: Any) -> dict[str, Any]:
    base = {
        "from": "551133334444",
        "to": "5511987654321",
        "id": "wamid.STAFF",
        "timestamp": "1760025990",
        "type": "text",
        "text": {"body": "Oi Ana, aqui é a Júlia da recepção."},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "551133334444", "phone_number_id": NUMBER_ID},
        "message_echoes": [{**base, **echo}],
    }
    change = {"field": "smb_message_echoes", "value": value}
    return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}


def test_parse_cloud_reads_staff_echoes_as_messages_from_me() -> None:
    assert only(parse_cloud(echo_payload())) == Inbound(
        provider_id="wamid.STAFF",
        chat_id="5511987654321",
        sender=Sender(phone="5511987654321"),
        from_me=True,
        sent_at=at(1760025990),
        kind="text",
        text="Oi Ana, aqui é a Júlia da recepção.",
    )


def test_parse_cloud_reads_staff_reactions_as_from_me() -> None:
    payload = echo_payload(type="reaction", reaction={"message_id": "wamid.X", "emoji": "🙏"})
    event = only(parse_cloud(payload))
    assert isinstance(event, Reaction) and event.from_me and event.chat_id == "5511987654321"


def test_parse_cloud_pairs_each_event_with_its_phone_number_id() -> None:
    first, second = text_example(), status_payload()
    second["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
    first["entry"].append(second["entry"][0])
    account = {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}
    history = {"field": "history", "value": {"metadata": {"phone_number_id": "999"}}}
    first["entry"][0]["changes"] += [account, history]
    assert parse_cloud(first) == [
        (NUMBER_ID, inbound()),
        ("999", Ignored("field not handled", {"field": "history"})),
        ("999", Status("wamid.OURS", "read")),
    ]


def test_parse_cloud_ignores_errors_reported_for_the_whole_value() -> None:
    errors = [{"code": 131000, "title": "Something went wrong"}]
    payload = with_value(messages=None, errors=errors)
    assert only(parse_cloud(payload)) == Ignored(
        "webhook error", {"error": "131000 Something went wrong"}
    )


def at_path(payload: dict[str, Any], path: tuple[Any, ...], value: Any = ...) -> dict[str, Any]:
    """`payload` with the node at `path` replaced, or deleted when no value is given."""
    parent: Any = payload
    for step in path[:-1]:
        parent = parent[step]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return payload


MESSAGE = ("entry", 0, "changes", 0, "value", "messages", 0)


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("object",), "page", "object must be 'whatsapp_business_account', got 'page'"),
        (("entry",), {"id": "1"}, "entry must be an array"),
        (("entry",), ..., "entry must be an array"),
        (("entry", 0), "x", "entry[0] must be an object"),
        (("entry", 0, "changes"), ..., "entry[0].changes must be an array"),
        (("entry", 0, "changes", 0, "value"), [], "entry[0].changes[0].value must be an object"),
        (("entry", 0, "changes", 0, "value", "metadata"), ..., ".value.metadata must be an object"),
        (("entry", 0, "changes", 0, "value", "messages"), {}, ".value.messages must be an array"),
        ((*MESSAGE, "id"), ..., ".messages[0] needs a non-empty string 'id'"),
        ((*MESSAGE, "timestamp"), "agora", ".messages[0].timestamp is not a timestamp"),
        ((*MESSAGE, "from"), ..., ".messages[0] has neither 'from' nor 'from_user_id'"),
    ],
)
def test_parse_cloud_refuses_malformed_payloads(
    path: tuple[Any, ...], value: Any, complaint: str
) -> None:
    with pytest.raises(PayloadError, match=re.escape(complaint)):
        parse_cloud(at_path(text_example(), path, value))


def test_parse_cloud_refuses_a_body_that_is_not_an_object() -> None:
    with pytest.raises(PayloadError, match="the webhook body must be an object"):
        parse_cloud([])  # type: ignore[arg-type]


def test_parse_cloud_refuses_a_reaction_without_its_target() -> None:
    with pytest.raises(PayloadError, match=re.escape("reaction needs a non-empty string")):
        parse_cloud(with_message(type="reaction", reaction={"emoji": "👍"}))


# Property tests: whatever JSON arrives, the parser answers with events or PayloadError. The
# real examples below, made hostile, are fuzzed in tests/security/test_payload_fuzz.py.

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
EXAMPLES: list[Callable[[], Any]] = [
    text_example,
    lambda: json.loads(VOICE),
    lambda: json.loads(LIST_REPLY),
    status_payload,
    echo_payload,
    lambda: with_message(type="reaction", reaction={"message_id": "wamid.OURS", "emoji": "👍"}),
    lambda: with_message(type="edit", edit={"original_message_id": "w", "message": {}}),
]


def answers_or_refuses(payload: Any) -> None:
    try:
        pairs = parse_cloud(payload)
    except PayloadError as error:
        assert error.message
    else:
        assert isinstance(pairs, list)
        for number_id, event in pairs:
            assert isinstance(number_id, str) and number_id
            assert isinstance(event, Inbound | Edit | Delete | Reaction | Status | Ignored)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_parse_cloud_answers_or_refuses_any_json(payload: Any) -> None:
    answers_or_refuses(payload)
    answers_or_refuses({"object": "whatsapp_business_account", "entry": payload})
