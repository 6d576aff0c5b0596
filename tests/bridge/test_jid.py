"""WhatsApp JIDs: parts, kinds, device stripping, phone digits and LIDs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zapvet.bridge.jid import Jid, jid_kind, lid_of, parse_jid, phone_of, strip_device


def test_parse_jid_splits_user_agent_device_and_server() -> None:
    assert parse_jid("5511987654321_1:12@s.whatsapp.net") == Jid(
        user="5511987654321", server="s.whatsapp.net", agent=1, device=12
    )
    assert parse_jid("203948571726354@lid") == Jid(user="203948571726354", server="lid")


@pytest.mark.parametrize(
    "raw", ["5511987654321", "", "@", "user@", "a@b@c", "5511:x@s.whatsapp.net", "55_y@lid"]
)
def test_parse_jid_refuses_what_is_not_a_jid(raw: str) -> None:
    assert parse_jid(raw) is None
    assert jid_kind(raw) is None


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("5511987654321@s.whatsapp.net", "phone"),
        ("5511987654321@c.us", "phone"),
        ("5511987654321:3@s.whatsapp.net", "phone"),
        ("203948571726354@lid", "lid"),
        ("120363041234567890@g.us", "group"),
        ("5511987654321-1600000000@g.us", "group"),
        ("status@broadcast", "broadcast"),
        ("1760025600@broadcast", "broadcast"),
        ("120363144038483540@newsletter", "newsletter"),
        ("5511987654321:99@hosted", "hosted"),
        ("203948571726354:99@hosted.lid", "hosted_lid"),
        ("13135550002@c.us", "bot"),
        ("867051314767696@bot", "bot"),
        ("5511987654321@call", "call"),
        ("someone@example.com", "other"),
    ],
)
def test_jid_kind_names_each_server(raw: str, kind: str) -> None:
    assert jid_kind(raw) == kind


def test_jid_is_status_only_for_the_status_broadcast() -> None:
    status, listing = parse_jid("status@broadcast"), parse_jid("1760025600@broadcast")
    assert status is not None and status.is_status
    assert listing is not None and not listing.is_status


def test_strip_device_drops_agent_and_device_and_keeps_the_server() -> None:
    assert strip_device("5511987654321:12@s.whatsapp.net") == "5511987654321@s.whatsapp.net"
    assert strip_device("5511987654321_1:2@c.us") == "5511987654321@c.us"
    assert strip_device("203948571726354@lid") == "203948571726354@lid"
    assert strip_device("not a jid") is None


def test_phone_of_reads_phone_number_jids_only() -> None:
    assert phone_of("553188887777@s.whatsapp.net") == "553188887777"  # legacy: no ninth digit
    assert phone_of("5511987654321:12@s.whatsapp.net") == "5511987654321"
    assert phone_of("5511987654321@c.us") == "5511987654321"
    assert phone_of("5511987654321:99@hosted") == "5511987654321"
    assert phone_of("203948571726354@lid") is None
    assert phone_of("120363041234567890@g.us") is None
    assert phone_of("13135550002@c.us") is None  # Meta AI
    assert phone_of("abc@s.whatsapp.net") is None


def test_lid_of_reads_lid_jids_only() -> None:
    assert lid_of("203948571726354@lid") == "203948571726354"
    assert lid_of("203948571726354:7@lid") == "203948571726354"
    assert lid_of("203948571726354:99@hosted.lid") == "203948571726354"
    assert lid_of("5511987654321@s.whatsapp.net") is None
    assert lid_of("x@lid") is None


@given(st.text())
def test_jid_helpers_never_raise_on_any_text(raw: str) -> None:
    jid = parse_jid(raw)
    assert jid_kind(raw) == (None if jid is None else jid.kind)
    assert strip_device(raw) == (None if jid is None else jid.bare)
    phone, lid = phone_of(raw), lid_of(raw)
    assert phone is None or lid is None
