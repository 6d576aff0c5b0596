"""Long replies cut at paragraph, line, sentence and word boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zapvet.bridge.splitting import DEFAULT_LIMIT, split_text

# Letters, punctuation that ends sentences, and every kind of whitespace `str.strip` knows.
_ALPHABET = 'abcãéç.!?…"» \t\n\r\u00a0\u2028\u3000'
texts = st.text(alphabet=_ALPHABET, max_size=400)
limits = st.integers(min_value=1, max_value=60)


def _ink(text: str) -> str:
    return "".join(c for c in text if not c.isspace())


@given(texts, limits)
def test_split_text_parts_are_stripped_nonempty_and_within_limit(text: str, limit: int) -> None:
    for part in split_text(text, limit):
        assert part
        assert part == part.strip()
        assert len(part) <= limit


@given(texts, limits)
def test_split_text_keeps_every_visible_character_in_order(text: str, limit: int) -> None:
    assert _ink("".join(split_text(text, limit))) == _ink(text)


@given(texts, limits)
def test_split_text_cuts_no_word_that_fits(text: str, limit: int) -> None:
    words = text.split()
    parts = split_text(text, limit)

    if all(len(word) <= limit for word in words):
        assert [word for part in parts for word in part.split()] == words


@given(texts, st.integers(min_value=400, max_value=DEFAULT_LIMIT))
def test_split_text_leaves_a_short_text_whole(text: str, limit: int) -> None:
    expected = [text.strip()] if text.strip() else []
    assert split_text(text, limit) == expected


def test_split_text_prefers_paragraph_boundaries() -> None:
    first, second, third = "a" * 30 + "\nlinha", "b" * 40, "c" * 50
    text = f"{first}\n\n{second}\n \n\n{third}"

    assert split_text(text, 90) == [f"{first}\n\n{second}", third]


def test_split_text_falls_back_to_line_breaks() -> None:
    lines = ["Horários de amanhã:", "09:00 banho", "10:30 tosa", "15:00 consulta"]

    assert split_text("\n".join(lines), 35) == [
        "Horários de amanhã:\n09:00 banho",
        "10:30 tosa\n15:00 consulta",
    ]


def test_split_text_falls_back_to_sentence_ends() -> None:
    text = "O Thor está ótimo. Tomou banho e vacina! Pode buscar às 17h? Obrigado."

    assert split_text(text, 40) == [
        "O Thor está ótimo. Tomou banho e vacina!",
        "Pode buscar às 17h? Obrigado.",
    ]


def test_split_text_falls_back_to_spaces() -> None:
    assert split_text("um dois três quatro cinco seis", 12) == [
        "um dois três",
        "quatro cinco",
        "seis",
    ]


def test_split_text_cuts_only_a_word_longer_than_the_limit() -> None:
    link = "https://petfeliz.example/agenda/" + "x" * 20

    assert split_text(f"Veja {link} hoje", 20) == [
        "Veja",
        link[:20],
        link[20:40],
        link[40:],
        "hoje",
    ]


def test_split_text_keeps_long_replies_under_the_cloud_api_limit() -> None:
    paragraph = ("O banho inclui hidratação, corte de unhas e limpeza de ouvidos. " * 20).strip()
    text = "\n\n".join([paragraph] * 8)

    parts = split_text(text)

    assert len(parts) == 3
    assert all(len(part) <= DEFAULT_LIMIT for part in parts)
    assert all(part.startswith("O banho") and part.endswith("ouvidos.") for part in parts)


def test_split_text_gives_nothing_for_a_blank_text() -> None:
    assert split_text(" \n\n\t ") == []


def test_split_text_refuses_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_text("oi", 0)
