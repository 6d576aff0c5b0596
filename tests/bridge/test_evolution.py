"""Evolution API v2 webhooks: every payload variant seen, as normalised events."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zapvet.bridge.events import (
    Delete,
    DeliveryStatus,
    Edit,
    Event,
    Ignored,
    Inbound,
    PayloadError,
    Reaction,
    Sender,
    Status,
)
from zapvet.bridge.evolution import parse_evolution

# The example payloads of research/whatsapp.md §4.5, verbatim (only re-wrapped).
PLAIN_TEXT = """
{"event":"messages.upsert","instance":"petshop-centro",
 "data":{"key":{"remoteJid":"5511987654321@s.whatsapp.net","fromMe":false,
                "id":"A5561E44C2A63682E4295B52F484C14E"},
  "pushName":"Ana Souza","status":"DELIVERY_ACK",
  "message":{"conversation":"Oi! Tem horário pra banho e tosa amanhã?",
             "messageContextInfo":{"deviceListMetadataVersion":2}},
  "messageType":"conversation","messageTimestamp":1760025600,
  "instanceId":"b1c2d3e4-0000-4a1b-9c2d-000000000001","source":"android"},
 "destination":"https://bot.example.com/webhooks/evolution","date_time":"2025-10-09T13:00:01.123Z",
 "sender":"5511933334444@s.whatsapp.net","server_url":"https://evo.example.com",
 "apikey":"B6D711FCDE4D4FD5936544120E713976"}
"""
LID_REPLY = """
{"event":"messages.upsert","instance":"petshop-centro",
 "data":{"key":{"remoteJid":"203948571726354@lid","remoteJidAlt":"553188887777@s.whatsapp.net",
                "fromMe":false,"id":"3A1B2C3D4E5F60718293","participant":"",
                "addressingMode":"lid"},
  "pushName":"Carlos","status":"DELIVERY_ACK","message":{"conversation":"Pode ser às 15h?"},
  "contextInfo":{"stanzaId":"3EB0C431C26A1916E0F1A2",
                 "participant":"5511933334444@s.whatsapp.net",
                 "quotedMessage":{"conversation":"Temos horário amanhã às 10h ou 15h."},
                 "expiration":0},
  "messageType":"conversation","messageTimestamp":1760025720,"instanceId":"b1c2…0001",
  "source":"ios"},
 "destination":"https://bot.example.com/webhooks/evolution","date_time":"2025-10-09T13:02:00.511Z",
 "sender":"5511933334444@s.whatsapp.net","server_url":"https://evo.example.com","apikey":null}
"""
VOICE_DATA = """
{"key":{"remoteJid":"5511987654321@s.whatsapp.net","fromMe":false,
        "id":"8F2D61A0C3B54E7A9D10F4E2B6C7A981"},
 "pushName":"Ana Souza","status":"DELIVERY_ACK","messageType":"audioMessage",
 "messageTimestamp":1760025800,
 "message":{"audioMessage":{
   "url":"https://mmg.whatsapp.net/v/t62.7117-24/19283746_n.enc?ccb=11-4",
   "mimetype":"audio/ogg; codecs=opus","fileLength":{"low":6065,"high":0,"unsigned":true},
   "seconds":7,"ptt":true,
   "mediaKey":{"0":143,"1":22,"2":9},"directPath":"/v/t62.7117-24/19283746_n.enc",
   "mediaKeyTimestamp":{"low":1760025799,"high":0,"unsigned":false}},
   "base64":"T2dnUwACAAAAAAAAAAA…"},
 "contextInfo":{},"instanceId":"b1c2…0001","source":"android"}
"""
IMAGE_DATA = """
{"key":{"remoteJid":"5511987654321@s.whatsapp.net","fromMe":false,"id":"3A9C1E77B02D4F6A8B11"},
 "pushName":"Ana Souza","status":"DELIVERY_ACK","messageType":"imageMessage",
 "messageTimestamp":1760025900,
 "message":{"imageMessage":{
   "url":"https://mmg.whatsapp.net/o1/v/t62.7118-24/f1/m233/abc.enc","mimetype":"image/jpeg",
   "caption":"Olha a alergia na patinha do Thor",
   "fileLength":{"low":184532,"high":0,"unsigned":true},
   "height":1600,"width":1200,"directPath":"/o1/v/t62.7118-24/f1/m233/abc.enc",
   "jpegThumbnail":{"0":255,"1":216}}},
 "contextInfo":{},"instanceId":"b1c2…0001","source":"ios"}
"""

ANA = Sender(phone="5511987654321", name="Ana Souza")
ANA_JID = "5511987654321@s.whatsapp.net"
CARLOS_LID = "203948571726354@lid"
CARLOS_PN = "553188887777@s.whatsapp.net"


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def plain() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(PLAIN_TEXT)
    return payload


def lid_reply() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(LID_REPLY)
    return payload


def upsert(data: Any) -> dict[str, Any]:
    return {"event": "messages.upsert", "instance": "petshop-centro", "data": data}


def with_message(message: dict[str, Any] | None, **data: Any) -> dict[str, Any]:
    """The plain-text example carrying another `message` (and other `data` fields)."""
    payload = plain()
    payload["data"]["message"] = message
    payload["data"].update(data)
    return payload


def with_key(**key: Any) -> dict[str, Any]:
    """The LID example with other `key` fields (None deletes one)."""
    payload = lid_reply()
    for name, value in key.items():
        if value is None:
            payload["data"]["key"].pop(name, None)
        else:
            payload["data"]["key"][name] = value
    return payload


def only(events: list[Event]) -> Event:
    assert len(events) == 1, events
    return events[0]


def inbound(**changes: Any) -> Inbound:
    """The plain-text example's event with `changes`."""
    base = Inbound(
        provider_id="A5561E44C2A63682E4295B52F484C14E",
        chat_id=ANA_JID,
        sender=ANA,
        from_me=False,
        sent_at=at(1760025600),
        kind="text",
        text="Oi! Tem horário pra banho e tosa amanhã?",
    )
    return Inbound(**{**base.__dict__, **changes})


def without_source(events: list[Event]) -> list[Event]:
    """The events with each file's fetch reference left out (tested on its own)."""
    return [
        replace(e, media={k: v for k, v in e.media.items() if k != "source"})
        if isinstance(e, Inbound) and e.media
        else e
        for e in events
    ]


def test_parse_evolution_reads_plain_text() -> None:
    assert parse_evolution(plain()) == [inbound()]


def test_parse_evolution_reads_a_quoted_reply_from_a_lid_contact() -> None:
    assert parse_evolution(lid_reply()) == [
        Inbound(
            provider_id="3A1B2C3D4E5F60718293",
            chat_id=CARLOS_LID,
            sender=Sender(phone="553188887777", lid="203948571726354", name="Carlos"),
            from_me=False,
            sent_at=at(1760025720),
            kind="text",
            text="Pode ser às 15h?",
            reply_to="3EB0C431C26A1916E0F1A2",
        )
    ]


def test_parse_evolution_reads_a_voice_note_with_long_file_length() -> None:
    assert parse_evolution(upsert(json.loads(VOICE_DATA))) == [
        Inbound(
            provider_id="8F2D61A0C3B54E7A9D10F4E2B6C7A981",
            chat_id=ANA_JID,
            sender=ANA,
            from_me=False,
            sent_at=at(1760025800),
            kind="audio",
            media={
                "voice": True,
                "seconds": 7,
                "mimetype": "audio/ogg; codecs=opus",
                "file_length": 6065,
                "source": {  # what getBase64FromMediaMessage needs, without the thumbnails
                    "key": json.loads(VOICE_DATA)["key"],
                    "message": {"audioMessage": json.loads(VOICE_DATA)["message"]["audioMessage"]},
                },
            },
            inline_media="T2dnUwACAAAAAAAAAAA…",  # handed to the worker through Redis only
        )
    ]


def test_parse_evolution_keeps_the_fetch_reference_without_thumbnails_or_base64() -> None:
    (event,) = parse_evolution(upsert(json.loads(IMAGE_DATA)))
    assert isinstance(event, Inbound) and event.media is not None
    source = event.media["source"]
    assert source["key"]["id"] == "3A9C1E77B02D4F6A8B11"
    assert "jpegThumbnail" not in source["message"]["imageMessage"]
    assert source["message"]["imageMessage"]["directPath"] == "/o1/v/t62.7118-24/f1/m233/abc.enc"
    assert event.inline_media is None
    assert "base64" not in json.dumps(event.media)


def test_parse_evolution_reads_evolutions_own_transcript() -> None:
    data = json.loads(VOICE_DATA)
    data["message"]["speechToText"] = "Quero marcar um banho"
    (event,) = parse_evolution(upsert(data))
    assert isinstance(event, Inbound) and event.media is not None
    assert event.media["speech_to_text"] == "Quero marcar um banho"


def test_parse_evolution_reads_an_image_caption() -> None:
    assert without_source(parse_evolution(upsert(json.loads(IMAGE_DATA)))) == [
        Inbound(
            provider_id="3A9C1E77B02D4F6A8B11",
            chat_id=ANA_JID,
            sender=ANA,
            from_me=False,
            sent_at=at(1760025900),
            kind="image",
            text="Olha a alergia na patinha do Thor",
            media={"mimetype": "image/jpeg", "file_length": 184532, "width": 1200, "height": 1600},
        )
    ]


@pytest.mark.parametrize("name", ["messages-upsert", "MESSAGES_UPSERT", "messages.upsert"])
def test_parse_evolution_takes_the_event_name_from_the_path(name: str) -> None:
    payload = plain()
    payload["event"] = "connection.update"  # the path wins over the body
    assert parse_evolution(payload, event=name) == [inbound()]
    del payload["event"]
    assert parse_evolution(payload, event=name) == [inbound()]


def test_parse_evolution_reads_a_batch_of_messages() -> None:
    voice, image = json.loads(VOICE_DATA), json.loads(IMAGE_DATA)
    events = parse_evolution(upsert([voice, image]))
    assert [(e.provider_id, e.kind) for e in events if isinstance(e, Inbound)] == [
        ("8F2D61A0C3B54E7A9D10F4E2B6C7A981", "audio"),
        ("3A9C1E77B02D4F6A8B11", "image"),
    ]
    assert parse_evolution(upsert([])) == []


def test_parse_evolution_reads_extended_text_and_its_own_reply_context() -> None:
    message = {
        "extendedTextMessage": {
            "text": "Quero o das 10h",
            "contextInfo": {"stanzaId": "3EB0AAA", "participant": "5511933334444@s.whatsapp.net"},
        }
    }
    event = only(parse_evolution(with_message(message, contextInfo={})))
    assert event == inbound(text="Quero o das 10h", reply_to="3EB0AAA")


def test_parse_evolution_reads_the_reply_from_message_context_info_of_2_4() -> None:
    payload = with_message({"conversation": "Sim"}, messageContextInfo={"stanzaId": "3EB0BBB"})
    assert only(parse_evolution(payload)) == inbound(text="Sim", reply_to="3EB0BBB")


@pytest.mark.parametrize(
    "wrapped",
    [
        {"ephemeralMessage": {"message": {"conversation": "Oi"}}},
        {"viewOnceMessage": {"message": {"conversation": "Oi"}}},
        {"viewOnceMessageV2": {"message": {"conversation": "Oi"}}},
        {"viewOnceMessageV2Extension": {"message": {"conversation": "Oi"}}},
        {"associatedChildMessage": {"message": {"conversation": "Oi"}}},
        {"deviceSentMessage": {"destinationJid": ANA_JID, "message": {"conversation": "Oi"}}},
        {
            "ephemeralMessage": {
                "message": {"viewOnceMessageV2": {"message": {"conversation": "Oi"}}}
            }
        },
        {"messageContextInfo": {}, "ephemeralMessage": {"message": {"conversation": "Oi"}}},
    ],
)
def test_parse_evolution_unwraps_wrapper_messages(wrapped: dict[str, Any]) -> None:
    assert only(parse_evolution(with_message(wrapped))) == inbound(text="Oi")


def test_parse_evolution_unwraps_a_document_with_caption() -> None:
    message = {
        "documentWithCaptionMessage": {
            "message": {
                "documentMessage": {
                    "caption": "Carteira de vacinação",
                    "fileName": "vacinas-thor.pdf",
                    "mimetype": "application/pdf",
                    "fileLength": "48213",
                    "pageCount": 2,
                }
            }
        }
    }
    event = only(without_source(parse_evolution(with_message(message))))
    media = {"mimetype": "application/pdf", "file_name": "vacinas-thor.pdf", "file_length": 48213}
    assert event == inbound(
        kind="document", text="Carteira de vacinação", media={**media, "page_count": 2}
    )


def test_parse_evolution_reads_a_view_once_image() -> None:
    message = {
        "viewOnceMessageV2": {
            "message": {"imageMessage": {"mimetype": "image/jpeg", "viewOnce": True}}
        }
    }
    event = only(without_source(parse_evolution(with_message(message))))
    assert event == inbound(kind="image", text="", media={"mimetype": "image/jpeg"})


@pytest.mark.parametrize(
    ("key", "sender"),
    [
        # ≤ 2.3.0: the LID chat, sometimes with senderPn
        (
            {"remoteJid": CARLOS_LID, "remoteJidAlt": None, "senderPn": CARLOS_PN},
            Sender(phone="553188887777", lid="203948571726354", name="Carlos"),
        ),
        # 2.3.1–2.3.4: remoteJid rewritten to the phone, the LID in previousRemoteJid
        (
            {"remoteJid": CARLOS_PN, "remoteJidAlt": None, "previousRemoteJid": CARLOS_LID},
            Sender(phone="553188887777", lid="203948571726354", name="Carlos"),
        ),
        # 2.3.7: the phone in both; the LID is lost
        (
            {"remoteJid": CARLOS_PN, "remoteJidAlt": CARLOS_PN},
            Sender(phone="553188887777", name="Carlos"),
        ),
        # 2.4.0-rc: swapped, remoteJidAlt holds the LID
        (
            {"remoteJid": CARLOS_PN, "remoteJidAlt": CARLOS_LID, "addressingMode": "pn"},
            Sender(phone="553188887777", lid="203948571726354", name="Carlos"),
        ),
        # Baileys 6.7.17–6.7.20 author fields
        (
            {"remoteJid": CARLOS_LID, "remoteJidAlt": None, "participantPn": CARLOS_PN},
            Sender(phone="553188887777", lid="203948571726354", name="Carlos"),
        ),
        (
            {"remoteJid": CARLOS_LID, "remoteJidAlt": None, "participantAlt": CARLOS_PN},
            Sender(phone="553188887777", lid="203948571726354", name="Carlos"),
        ),
        # a LID without any phone number (#1872)
        (
            {"remoteJid": CARLOS_LID, "remoteJidAlt": None},
            Sender(lid="203948571726354", name="Carlos"),
        ),
        # a linked-device suffix on the phone JID
        (
            {"remoteJid": "553188887777:4@s.whatsapp.net", "remoteJidAlt": None},
            Sender(phone="553188887777", name="Carlos"),
        ),
    ],
)
def test_parse_evolution_reads_every_lid_and_phone_form(
    key: dict[str, Any], sender: Sender
) -> None:
    event = only(parse_evolution(with_key(**key)))
    assert isinstance(event, Inbound)
    assert event.sender == sender
    assert event.chat_id == key["remoteJid"]  # the reply address, exactly as received


@pytest.mark.parametrize(
    "stamp",
    [
        1760025600,
        "1760025600",
        {"low": 1760025600, "high": 0, "unsigned": False},
        1760025600000,
        "1760025600000",
        1760025600.0,
    ],
)
def test_parse_evolution_reads_every_timestamp_form(stamp: Any) -> None:
    payload = plain()
    payload["data"]["messageTimestamp"] = stamp
    assert only(parse_evolution(payload)) == inbound()


def test_parse_evolution_reads_a_long_whose_low_word_is_negative() -> None:
    payload = plain()
    payload["data"]["messageTimestamp"] = {"low": -1, "high": 0, "unsigned": True}
    assert only(parse_evolution(payload)) == inbound(sent_at=at(2**32 - 1))


@pytest.mark.parametrize(
    ("part", "kind", "text", "media"),
    [
        (
            {"videoMessage": {"caption": "Olha", "seconds": "12", "mimetype": "video/mp4"}},
            "video",
            "Olha",
            {"mimetype": "video/mp4", "seconds": 12},
        ),
        (
            {"ptvMessage": {"seconds": 5, "mimetype": "video/mp4"}},
            "video",
            "",
            {"mimetype": "video/mp4", "seconds": 5, "video_note": True},
        ),
        (
            {"videoMessage": {"gifPlayback": True, "mimetype": "video/mp4"}},
            "video",
            "",
            {"mimetype": "video/mp4", "gif": True},
        ),
        (
            {"audioMessage": {"seconds": 31, "mimetype": "audio/mpeg", "ptt": False}},
            "audio",
            "",
            {"voice": False, "seconds": 31, "mimetype": "audio/mpeg"},
        ),
        (
            {"stickerMessage": {"mimetype": "image/webp", "isAnimated": True}},
            "sticker",
            "",
            {"mimetype": "image/webp", "animated": True},
        ),
        (
            {
                "locationMessage": {
                    "degreesLatitude": -23.5613,
                    "degreesLongitude": -46.6565,
                    "name": "Pet Shop Centro",
                    "address": "Av. Paulista, 1000",
                }
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
            {"liveLocationMessage": {"degreesLatitude": -23.5, "degreesLongitude": -46.6}},
            "location",
            "",
            {"latitude": -23.5, "longitude": -46.6, "live": True},
        ),
        (
            {
                "contactMessage": {
                    "displayName": "Dra. Paula",
                    "vcard": "BEGIN:VCARD\nVERSION:3.0\nFN:Dra. Paula\n"
                    "item1.TEL;waid=5511955556666:+55 11 95555-6666\nEND:VCARD",
                }
            },
            "contact",
            "",
            {"contacts": [{"name": "Dra. Paula", "phones": ["5511955556666"]}]},
        ),
        (
            {
                "contactsArrayMessage": {
                    "displayName": "2 contatos",
                    "contacts": [
                        {
                            "displayName": "Rui",
                            "vcard": "BEGIN:VCARD\nTEL:+55 11 3333-4444\nEND:VCARD",
                        },
                        {"displayName": "Bia"},
                    ],
                }
            },
            "contact",
            "",
            {
                "contacts": [
                    {"name": "Rui", "phones": ["+55 11 3333-4444"]},
                    {"name": "Bia", "phones": []},
                ]
            },
        ),
        (
            {"eventMessage": {"name": "Feira de adoção"}},
            "other",
            "",
            {"type": "eventMessage"},
        ),
    ],
)
def test_parse_evolution_reads_media_kinds(
    part: dict[str, Any], kind: str, text: str, media: dict[str, Any]
) -> None:
    event = only(parse_evolution(with_message(part)))
    assert isinstance(event, Inbound) and event.media is not None
    source = event.media.pop("source", None)  # files only: how the worker fetches them
    assert event == inbound(kind=kind, text=text, media=media)
    downloadable = kind in ("image", "video", "audio", "document")
    assert (source is not None) == downloadable
    if source is not None:
        assert source["message"] == {name: dict(value) for name, value in part.items()}


@pytest.mark.parametrize(
    ("part", "text", "media"),
    [
        (
            {"buttonsResponseMessage": {"selectedButtonId": "sim", "selectedDisplayText": "Sim"}},
            "Sim",
            {"type": "button_reply", "id": "sim", "title": "Sim"},
        ),
        (
            {
                "listResponseMessage": {
                    "title": "Banho e tosa",
                    "description": "Porte pequeno",
                    "singleSelectReply": {"selectedRowId": "svc_banho_tosa"},
                }
            },
            "Banho e tosa",
            {
                "type": "list_reply",
                "id": "svc_banho_tosa",
                "title": "Banho e tosa",
                "description": "Porte pequeno",
            },
        ),
        (
            {
                "templateButtonReplyMessage": {
                    "selectedId": "confirmar",
                    "selectedDisplayText": "Confirmar",
                    "selectedIndex": 0,
                }
            },
            "Confirmar",
            {"type": "button", "id": "confirmar", "title": "Confirmar", "index": 0},
        ),
        (
            {
                "interactiveResponseMessage": {
                    "body": {"text": "Enviado"},
                    "nativeFlowResponseMessage": {"name": "flow", "paramsJson": '{"pet":"Thor"}'},
                }
            },
            "Enviado",
            {"type": "nfm_reply", "name": "flow", "response_json": '{"pet":"Thor"}'},
        ),
    ],
)
def test_parse_evolution_reads_button_and_list_replies(
    part: dict[str, Any], text: str, media: dict[str, Any]
) -> None:
    event = only(parse_evolution(with_message(part)))
    assert event == inbound(kind="interactive", text=text, media=media)


def test_parse_evolution_keeps_staff_messages_typed_on_the_phone() -> None:
    payload = with_key(fromMe=True)
    payload["data"]["pushName"] = "Você"
    event = only(parse_evolution(payload))
    assert isinstance(event, Inbound)
    assert event.from_me is True
    # the customer of the chat, not the business: ingest files the message under them
    assert event.sender == Sender(phone="553188887777", lid="203948571726354")


def test_parse_evolution_reads_reactions_and_their_removal() -> None:
    reaction = {"key": {"remoteJid": ANA_JID, "fromMe": True, "id": "3EB0C4"}, "text": "❤️"}
    payload = with_message({"reactionMessage": {**reaction, "senderTimestampMs": "1760025600123"}})
    expected = Reaction(
        provider_id="A5561E44C2A63682E4295B52F484C14E",
        target_id="3EB0C4",
        chat_id=ANA_JID,
        sender=ANA,
        from_me=False,
        emoji="❤️",
        sent_at=at(1760025600),
    )
    assert parse_evolution(payload) == [expected]
    removed = with_message({"reactionMessage": {**reaction, "text": ""}})
    assert parse_evolution(removed) == [Reaction(**{**expected.__dict__, "emoji": ""})]


@pytest.mark.parametrize("kind", ["REVOKE", 0])
def test_parse_evolution_reads_a_revoke_inside_an_upsert(kind: Any) -> None:
    protocol = {"key": {"remoteJid": ANA_JID, "fromMe": False, "id": "3A00TARGET"}, "type": kind}
    payload = with_message({"protocolMessage": protocol})
    assert parse_evolution(payload) == [Delete(target_id="3A00TARGET", chat_id=ANA_JID)]


@pytest.mark.parametrize("kind", ["MESSAGE_EDIT", 14])
def test_parse_evolution_reads_an_edit_inside_an_upsert(kind: Any) -> None:
    protocol = {
        "key": {"remoteJid": ANA_JID, "fromMe": False, "id": "3A00TARGET"},
        "type": kind,
        "editedMessage": {"extendedTextMessage": {"text": "Pode ser às 16h?"}},
        "timestampMs": "1760025660000",
    }
    payload = with_message({"editedMessage": {"message": {"protocolMessage": protocol}}})
    assert parse_evolution(payload) == [
        Edit("3A00TARGET", ANA_JID, "Pode ser às 16h?", at(1760025660))
    ]


def test_parse_evolution_ignores_other_protocol_messages() -> None:
    payload = with_message({"protocolMessage": {"type": "EPHEMERAL_SETTING"}})
    assert parse_evolution(payload) == [
        Ignored(
            "protocol message",
            {"provider_id": "A5561E44C2A63682E4295B52F484C14E", "type": "EPHEMERAL_SETTING"},
        )
    ]


def edited(kind: Any, remote_jid: str = ANA_JID) -> dict[str, Any]:
    return {
        "event": "messages.edited",
        "instance": "petshop-centro",
        "data": {
            "key": {"remoteJid": remote_jid, "fromMe": False, "id": "3A00TARGET"},
            "type": kind,
            "editedMessage": {"conversation": "Na verdade são dois cães"},
            "timestampMs": "1760025660000",
        },
    }


def test_parse_evolution_reads_messages_edited() -> None:
    assert parse_evolution(edited("MESSAGE_EDIT")) == [
        Edit("3A00TARGET", ANA_JID, "Na verdade são dois cães", at(1760025660))
    ]
    assert parse_evolution(edited("REVOKE")) == [Delete("3A00TARGET", ANA_JID)]


def test_parse_evolution_ignores_edits_in_groups() -> None:
    event = only(parse_evolution(edited("MESSAGE_EDIT", "120363041234567890@g.us")))
    assert isinstance(event, Ignored) and event.reason == "group chat"


@pytest.mark.parametrize(
    "data",
    [
        {"remoteJid": ANA_JID, "fromMe": False, "id": "3A00TARGET", "status": "DELETED"},
        {"key": {"remoteJid": ANA_JID, "fromMe": False, "id": "3A00TARGET"}},
    ],
)
def test_parse_evolution_reads_messages_delete(data: dict[str, Any]) -> None:
    payload = {"event": "messages.delete", "data": data}
    assert parse_evolution(payload) == [Delete(target_id="3A00TARGET", chat_id=ANA_JID)]


def update(status: Any, **fields: Any) -> dict[str, Any]:
    data = {
        "keyId": "3EB0F00D",
        "remoteJid": ANA_JID,
        "fromMe": True,
        "participant": None,
        "status": status,
        "instanceId": "b1c2…0001",
        "messageId": "cm2x0001",
    }
    return {"event": "messages.update", "data": {**data, **fields}}


@pytest.mark.parametrize(
    ("status", "delivery"),
    [
        ("SERVER_ACK", "sent"),
        ("DELIVERY_ACK", "delivered"),
        ("READ", "read"),
        ("PLAYED", "played"),
        ("ERROR", "failed"),
        (4, "read"),
    ],
)
def test_parse_evolution_reads_delivery_statuses(status: Any, delivery: DeliveryStatus) -> None:
    assert parse_evolution(update(status)) == [Status(provider_id="3EB0F00D", status=delivery)]


def test_parse_evolution_reads_an_update_with_a_nested_key() -> None:
    data = {"key": {"remoteJid": ANA_JID, "fromMe": True, "id": "3EB0F00D"}, "status": "READ"}
    payload = {"event": "messages.update", "data": data}
    assert parse_evolution(payload) == [Status(provider_id="3EB0F00D", status="read")]


def test_parse_evolution_refuses_an_update_without_a_message_id() -> None:
    payload = update("READ")
    del payload["data"]["keyId"]
    with pytest.raises(PayloadError, match="needs a non-empty string 'keyId'"):
        parse_evolution(payload)


def test_parse_evolution_reads_an_update_to_deleted_as_a_delete() -> None:
    assert parse_evolution(update("DELETED")) == [Delete(target_id="3EB0F00D", chat_id=ANA_JID)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (update("PENDING"), "status not tracked"),
        (update("READ", fromMe=False), "receipt for a received message"),
        (update("SERVER_ACK", message={"editedMessage": {}}), "edit reported as an update"),
        (update("SERVER_ACK", pollUpdates=[{"vote": {}}]), "poll vote"),
        (update("READ", remoteJid="120363041234567890@g.us"), "group chat"),
    ],
)
def test_parse_evolution_ignores_updates_that_are_not_delivery_news(
    payload: dict[str, Any], reason: str
) -> None:
    event = only(parse_evolution(payload))
    assert isinstance(event, Ignored) and event.reason == reason


def test_parse_evolution_ignores_our_own_api_sends() -> None:
    sent = {
        "key": {"remoteJid": ANA_JID, "fromMe": True, "id": "3EB0SENT"},
        "status": "PENDING",
        "message": {"conversation": "Temos horário amanhã às 10h ou 15h."},
        "messageType": "conversation",
        "messageTimestamp": 1760025700,
        "instanceId": "b1c2…0001",
        "source": "web",
    }
    payload = {"event": "send.message", "data": sent}
    assert parse_evolution(payload) == [Ignored("own API send", {"provider_id": "3EB0SENT"})]
    assert parse_evolution({"data": sent}, event="send-message") == [
        Ignored("own API send", {"provider_id": "3EB0SENT"})
    ]


GROUP = "120363041234567890@g.us"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            with_key(remoteJid=GROUP, participant=CARLOS_LID, participantAlt=CARLOS_PN),
            "group chat",
        ),
        (with_key(remoteJid="status@broadcast", participant=CARLOS_PN), "status broadcast"),
        (with_key(remoteJid="1760025600@broadcast"), "broadcast list"),
        (with_key(remoteJid="120363144038483540@newsletter"), "newsletter"),
        (with_key(remoteJid="13135550002@c.us"), "bot chat"),
        (with_message({"conversation": "x"}, messageStubType=2), "stub without content"),
        (with_message(None, messageStubParameters=["No session found"]), "stub without content"),
        (with_message({"pollCreationMessageV3": {"name": "Qual dia?"}}), "poll"),
        (with_message({"pollUpdateMessage": {"vote": {}}}), "poll vote"),
        (with_message({"albumMessage": {"expectedImageCount": 3}}), "album header"),
        (
            with_message({"secretEncryptedMessage": {"targetMessageKey": {"id": "3A39"}}}),
            "encrypted edit without content",
        ),
        (
            with_message({"senderKeyDistributionMessage": {"groupId": GROUP}}),
            "sender key distribution only",
        ),
        (with_message({"messageContextInfo": {}}), "empty message"),
    ],
)
def test_parse_evolution_ignores_what_is_not_a_customer_message(
    payload: dict[str, Any], reason: str
) -> None:
    event = only(parse_evolution(payload))
    assert isinstance(event, Ignored) and event.reason == reason


@pytest.mark.parametrize(
    "name",
    [
        "presence.update",
        "contacts.upsert",
        "chats.upsert",
        "messages.set",
        "groups.upsert",
        "call",
    ],
)
def test_parse_evolution_ignores_other_events(name: str) -> None:
    payload = {"event": name, "data": {"state": "open"}}
    assert parse_evolution(payload) == [Ignored("event not handled", {"event": name})]


def at_path(payload: Any, path: tuple[Any, ...], value: Any = ...) -> Any:
    """`payload` with the node at `path` replaced, or deleted when no value is given."""
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return payload


def without(path: tuple[str, ...]) -> dict[str, Any]:
    payload: dict[str, Any] = at_path(plain(), path)
    return payload


def replaced(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    payload: dict[str, Any] = at_path(plain(), path, value)
    return payload


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        ([1, 2], "the webhook body must be an object"),
        (without(("event",)), "names no event"),
        (without(("data",)), "without data"),
        (replaced(("data",), "oops"), "data must be an array"),
        (replaced(("data",), [1]), "data[0] must be an object"),
        (without(("data", "key")), "data.key must be an object"),
        (without(("data", "key", "id")), "data.key needs a non-empty string 'id'"),
        (without(("data", "key", "remoteJid")), "needs a non-empty string 'remoteJid'"),
        (replaced(("data", "key", "remoteJid"), "5511987654321"), "is not a WhatsApp JID"),
        (replaced(("data", "key", "remoteJid"), "x@s.whatsapp.net"), "neither a phone"),
        (replaced(("data", "messageTimestamp"), "ontem"), "data.messageTimestamp is not a"),
        (without(("data", "messageTimestamp")), "data.messageTimestamp is not a"),
        (replaced(("data", "messageTimestamp"), 10**30), "out of range"),
        (replaced(("data", "message"), "Oi"), "data.message must be an object"),
    ],
)
def test_parse_evolution_refuses_malformed_payloads(payload: Any, complaint: str) -> None:
    with pytest.raises(PayloadError, match=re.escape(complaint)):
        parse_evolution(payload)


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
    plain,
    lid_reply,
    lambda: upsert(json.loads(VOICE_DATA)),
    lambda: upsert([json.loads(IMAGE_DATA), json.loads(VOICE_DATA)]),
    lambda: edited("MESSAGE_EDIT"),
    lambda: update("READ"),
    lambda: with_message({"reactionMessage": {"key": {"id": "x"}, "text": "👍"}}),
    lambda: with_message({"ephemeralMessage": {"message": {"listResponseMessage": {}}}}),
]


def answers_or_refuses(payload: Any, event: str | None = None) -> None:
    try:
        events = parse_evolution(payload, event=event)
    except PayloadError as error:
        assert error.message
    else:
        assert isinstance(events, list)
        assert all(
            isinstance(e, Inbound | Edit | Delete | Reaction | Status | Ignored) for e in events
        )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(JSON, st.sampled_from([None, "messages-upsert", "messages.update", "send.message"]))
def test_parse_evolution_answers_or_refuses_any_json(payload: Any, event: str | None) -> None:
    answers_or_refuses(payload, event)
