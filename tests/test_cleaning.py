"""`clean_text` over arbitrary Unicode: whatever a model writes, the result is storable,
visible and stable, and ordinary text comes through unchanged."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from zapvet.cleaning import CUT_ENDING, MAX_TEXT_CHARS, clean_arguments, clean_text

#: Every code point, surrogates included (what a JSON "\ud83d" escape decodes to).
ANY_TEXT = st.text(alphabet=st.characters(codec=None, categories=None), max_size=300)
NASTY = st.sampled_from(
    [
        "\x00",
        "\ud83d",
        "\ude00",
        "\ud83d\ude00",
        "\u202e",
        "\u2066",
        "\ufeff",
        "\r\n",
        "\u2028",
        "\x1b[31m",
        "\x7f",
        "e\u0301",
        "\U0001f436",
        "👨\u200d👩\u200d👧",
        "\t",
    ]
)
MIXED = st.lists(st.one_of(NASTY, ANY_TEXT), max_size=12).map("".join)
#: Text a person writes: letters, digits, punctuation, spaces, symbols such as emoji.
ORDINARY = st.text(
    alphabet=st.characters(categories=["L", "M", "N", "P", "S", "Zs"], exclude_characters="\u00a0"),
    max_size=300,
)


def _visible(ch: str) -> bool:
    return ch in "\n\t" or unicodedata.category(ch) not in {"Cc", "Cs"}


@given(MIXED)
def test_clean_text_always_gives_storable_visible_nfc_text(raw: str) -> None:
    cleaned = clean_text(raw)
    cleaned.encode("utf-8")  # strict: a lone surrogate would raise
    assert "\x00" not in cleaned
    assert all(_visible(ch) for ch in cleaned)
    assert not set(cleaned) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
    assert unicodedata.is_normalized("NFC", cleaned)
    assert cleaned == cleaned.strip()
    assert len(cleaned) <= MAX_TEXT_CHARS


@given(MIXED)
def test_clean_text_is_idempotent(raw: str) -> None:
    once = clean_text(raw)
    assert clean_text(once) == once


@given(ORDINARY)
def test_clean_text_keeps_ordinary_text_as_written(raw: str) -> None:
    assert clean_text(raw) == unicodedata.normalize("NFC", raw).strip()


@given(st.text(min_size=1, max_size=40), st.integers(min_value=60, max_value=400))
def test_clean_text_cuts_long_text_at_the_limit_with_the_ending(word: str, limit: int) -> None:
    raw = " ".join([word.strip() or "palavra"] * 200)
    cleaned = clean_text(raw, limit=limit)
    assert len(cleaned) <= limit
    if len(clean_text(raw, limit=10**6)) > limit:
        assert cleaned.endswith(CUT_ENDING)
        assert clean_text(raw, limit=10**6).startswith(cleaned.removesuffix(CUT_ENDING))


def test_clean_text_repairs_a_split_emoji_and_drops_the_unpaired_half() -> None:
    assert clean_text("Oi \ud83d\udc36 tudo bem\ud83d?") == "Oi 🐶 tudo bem?"


def test_clean_text_examples() -> None:
    assert clean_text("Olá\x00, Rex!") == "Olá, Rex!"
    assert clean_text("linha 1\r\nlinha 2\u2028linha 3") == "linha 1\nlinha 2\nlinha 3"
    assert clean_text("preço \u202eR$ 021\u202c") == "preço R$ 021"
    assert clean_text("Ãˆ e\u0301") == "Ãˆ é"
    assert clean_text("\x1b[31mvermelho\x1b[0m") == "[31mvermelho[0m"
    assert clean_text(" \x00 \u200b ") == "\u200b"  # a zero-width space is a format char, kept
    assert clean_text("\x00\ud800 \t\n") == ""


def test_clean_text_refuses_a_limit_too_small_for_the_ending() -> None:
    with pytest.raises(ValueError, match="limit must exceed"):
        clean_text("x", limit=5)


def test_clean_arguments_cleans_strings_at_any_depth_and_keeps_the_rest() -> None:
    args = {
        "name": "Rex\x00",
        "age_years": 3,
        "tags": ["a\ud83d", {"k\x00": "v\u202e"}],
        "ok": None,
    }
    assert clean_arguments(args) == {
        "name": "Rex",
        "age_years": 3,
        "tags": ["a", {"k": "v"}],
        "ok": None,
    }


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=MIXED)
def test_clean_text_output_round_trips_through_postgresql(engine: Engine, raw: str) -> None:
    cleaned = clean_text(raw)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT CAST(:t AS text)"), {"t": cleaned}).scalar_one()
    assert stored == cleaned
