"""Phone normalisation and the Brazilian ninth digit."""

from __future__ import annotations

import pytest

from zapvet.bridge.identity import normalise_phone, phone_key, phone_variants


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("+55 11 98888-7777", "5511988887777"),
        ("(11) 98888-7777", "5511988887777"),
        ("11988887777", "5511988887777"),
        ("+1 (415) 555-0100", "14155550100"),
        ("5531 8888-7777", "553188887777"),
    ],
)
def test_typed_numbers_become_international_digits(typed: str, digits: str) -> None:
    assert normalise_phone(typed) == digits


@pytest.mark.parametrize("bad", ["123", "+55", "not a phone", "1234567890123456"])
def test_implausible_numbers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_phone(bad)


def test_both_spellings_of_a_brazilian_mobile_share_a_key() -> None:
    assert phone_key("5511988887777") == phone_key("551188887777") == "551188887777"
    assert phone_key("5531988887777") == phone_key("553188887777")


def test_landlines_and_other_countries_keep_their_digits() -> None:
    assert phone_key("551133334444") == "551133334444"  # landline: starts with 3
    assert phone_key("14155550100") == "14155550100"


def test_variants_list_both_spellings_of_a_mobile() -> None:
    assert phone_variants("551188887777") == ("5511988887777", "551188887777")
    assert phone_variants("5511988887777") == ("5511988887777", "551188887777")
    assert phone_variants("551133334444") == ("551133334444",)
