"""Prices as integer cents, shown the Brazilian way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zapvet.money import format_brl, parse_price


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("120.00", 12000),
        ("120,00", 12000),
        ("R$ 1.234,56", 123456),
        ("70.83", 7083),
        (120, 12000),
        (70.83, 7083),
        (0, 0),
        ("0.5", 50),
    ],
)
def test_prices_parse_to_exact_cents(text: str | int | float, cents: int) -> None:
    assert parse_price(text) == cents


@pytest.mark.parametrize("bad", ["12x", "-5", "1.234", "0.001", "nan", True])
def test_bad_prices_are_refused(bad: str | bool) -> None:
    with pytest.raises(ValueError):
        parse_price(bad)


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (85000, "R$ 850,00"),
        (7083, "R$ 70,83"),
        (123456789, "R$ 1.234.567,89"),
        (5, "R$ 0,05"),
        (-500, "-R$ 5,00"),
    ],
)
def test_format_brl(cents: int, text: str) -> None:
    assert format_brl(cents) == text


@given(st.integers(min_value=0, max_value=10**12))
def test_formatting_round_trips_through_parsing(cents: int) -> None:
    assert parse_price(format_brl(cents)) == cents
