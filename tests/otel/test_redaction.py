"""The scrubber masks phone numbers only: the dates, times, prices and ids a booking is
debugged with stay readable in spans and logs."""

from __future__ import annotations

import pytest

from zapvet.otel.redaction import scrub_attributes, scrub_text

KEPT = [
    "2026-11-25",
    "agendado para 2026-11-26 às 10:00",
    "25/11/2026 10:00",
    "26/11",
    "2026-11-25T13:00:00-03:00",
    "2026-11-25T16:00:00.123456+00:00",
    "2026-11-25 13:00:00Z",
    "20261125T130000Z",
    "20261125",
    "08:00-12:00",
    "10:00:00.250",
    "R$ 120,00",
    "R$ 1.234,56",
    "price_cents=12000",
    "120.00",
    "appointment 4821",
    "agendamento #4821 cancelado",
    "order 2026112500123",
    "pedido 000123456789",
    "3EB0C767D097B7C7C030",
    "wamid.HBgNNTUxMTk4ODg4Nzc3NxUCABIYFDNFQjBDNzY3RDA5N0I3QzdDMDMwAA==",
    "550e8400-e29b-41d4-a716-446655440000",
    "12345678-1234-5678-1234-567812345678",
    "4bf92f3577b34da6a3ce929d0e0e4736",
    "unix 1764079200, ms 1764079200000",
    "POST https://graph.facebook.com/v21.0/106540352242922/messages",
    "120363025246125486@g.us",
    "192.168.100.200:8080",
    "CEP 01310-100",
    "3.14159265358979",
    "2025-2026",
]


@pytest.mark.parametrize("text", KEPT)
def test_redaction_keeps_dates_times_prices_and_ids(text: str) -> None:
    assert scrub_text(text, capture=False) == text


PHONES = [
    "+55 11 98888-7777",
    "+55 (11) 98888-7777",
    "+5511988887777",
    "5511988887777",
    "11988887777",
    "(11) 98888-7777",
    "(11)98888-7777",
    "11 98888-7777",
    "55 11 9 8888 7777",
    "98888-7777",
    "551188887777",  # the legacy 8-digit mobile form WhatsApp sends
    "+55 11 8888-7777",
    "(21) 3333-4444",  # a landline
    "+55 20 91234-5678",  # no such area code, but written as a phone: masked all the same
    "+1 415 555 2671",
    "14155552671",
    "+351 912 345 678",
]


@pytest.mark.parametrize("phone", PHONES)
def test_redaction_masks_phones_in_many_spellings(phone: str) -> None:
    assert scrub_text(f"cliente {phone} agendou", capture=False) == "cliente <phone> agendou"
    assert scrub_text(phone, capture=False) == "<phone>"


@pytest.mark.parametrize(
    ("jid", "masked"),
    [
        ("5511988887777@s.whatsapp.net", "<phone>@s.whatsapp.net"),
        ("551188887777@s.whatsapp.net", "<phone>@s.whatsapp.net"),
        ("5511988887777:12@s.whatsapp.net", "<phone>:12@s.whatsapp.net"),
        ("14155552671@c.us", "<phone>@c.us"),
        ("203948571726354@lid", "<phone>@lid"),
        ("5511988887777-1609876543@g.us", "<phone>-1609876543@g.us"),
    ],
)
def test_redaction_masks_the_phone_in_whatsapp_ids(jid: str, masked: str) -> None:
    assert scrub_text(f"reply to {jid}", capture=False) == f"reply to {masked}"


def test_redaction_masks_the_phone_and_keeps_the_booking_around_it() -> None:
    line = (
        "Rex: consulta 2026-11-26T10:00:00-03:00 (R$ 120,00), agendamento #4821, "
        "cliente +55 11 98888-7777 / 5511988887777@s.whatsapp.net, idade 5 11 98888-7777, "
        "https://wa.me/5511988887777?text=oi, 2026-11-25 11 98888-7777 2026-11-27"
    )
    assert scrub_text(line, capture=False) == (
        "Rex: consulta 2026-11-26T10:00:00-03:00 (R$ 120,00), agendamento #4821, "
        "cliente <phone> / <phone>@s.whatsapp.net, idade 5 <phone>, "
        "https://wa.me/<phone>?text=oi, 2026-11-25 <phone> 2026-11-27"
    )


def test_redaction_capture_keeps_phones_but_never_secrets() -> None:
    url = "/webhooks/cloud?hub.verify_token=s3cret&number=5511988887777&date=2026-11-25"
    assert scrub_text(url, capture=True) == (
        "/webhooks/cloud?hub.verify_token=REDACTED&number=5511988887777&date=2026-11-25"
    )
    assert scrub_text(url, capture=False) == (
        "/webhooks/cloud?hub.verify_token=REDACTED&number=<phone>&date=2026-11-25"
    )


def test_redaction_span_attributes_keep_booking_fields() -> None:
    attributes = {
        "zapvet.appointment.id": 4821,
        "zapvet.appointment.starts_at": "2026-11-26T10:00:00-03:00",
        "gen_ai.tool.name": "book_appointment",
        "zapvet.reply.text": "Agendado!",
        "http.url": "http://gateway/chat/whatsappNumbers?numbers=5511988887777",
        "messages": ("2026-11-26", "+55 11 98888-7777"),
    }
    assert scrub_attributes(attributes, capture=False) == {
        "zapvet.appointment.id": 4821,
        "zapvet.appointment.starts_at": "2026-11-26T10:00:00-03:00",
        "gen_ai.tool.name": "book_appointment",
        "zapvet.reply.text": "<redacted>",
        "http.url": "http://gateway/chat/whatsappNumbers?numbers=<phone>",
        "messages": ("2026-11-26", "<phone>"),
    }
