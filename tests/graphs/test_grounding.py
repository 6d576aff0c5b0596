"""Prices, dates and times in a reply, checked against the turn's tool results and prompt."""

from __future__ import annotations

import json
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zapvet.graphs.grounding import Fact, extract_facts, ungrounded_facts
from zapvet.money import format_brl

TODAY = date(2026, 11, 25)

SEED_REPLY = """Maravilha! ✅
Agendamento confirmado:
Data: Amanhã
Horário: 10:00
Pet: Rex (Golden Retriever, 3 anos)
Serviço: Consulta Veterinária Geral
Valor: R$ 120,00
Enviaremos um lembrete 1 hora antes da consulta."""

BOOKING_RESULT = json.dumps(
    {
        "appointment_id": 7,
        "starts_at": "2026-11-26T10:00:00-03:00",
        "service": "Consulta Veterinária Geral",
        "price": "120.00",
    },
    ensure_ascii=False,
)

CATALOGUE_PROMPT = """Você é a atendente da Pet Feliz. Hoje é quarta-feira, 25/11/2026.
Horário de funcionamento: segunda a sexta 08:00-18:00; sábado 08:00-12:00.
Telefone da clínica: +55 11 98888-7777.
Serviços:
- Consulta Veterinária Geral: R$ 120,00 (30 min)
- Banho e Tosa (porte grande): R$ 95,00
- Vacina V10: R$ 85,00"""


def kinds_and_values(text: str) -> list[tuple[str, int | tuple[int, ...]]]:
    return [(fact.kind, fact.value) for fact in extract_facts(text, today=TODAY)]


def test_extract_facts_reads_the_seed_confirmation() -> None:
    assert extract_facts(SEED_REPLY, today=TODAY) == [
        Fact("date", (2026, 11, 26), "Amanhã"),
        Fact("time", (10, 0), "10:00"),
        Fact("money", 12000, "R$ 120,00"),
    ]


def test_ungrounded_facts_seed_confirmation_is_grounded() -> None:
    sources = [CATALOGUE_PROMPT, BOOKING_RESULT]
    assert ungrounded_facts(SEED_REPLY, sources, today=TODAY) == []


@pytest.mark.parametrize(
    ("written", "changed", "expected"),
    [
        ("R$ 120,00", "R$ 150,00", Fact("money", 15000, "R$ 150,00")),
        ("10:00", "11:00", Fact("time", (11, 0), "11:00")),
        ("Amanhã", "Depois de amanhã", Fact("date", (2026, 11, 27), "Depois de amanhã")),
    ],
)
def test_ungrounded_facts_reports_exactly_the_invented_fact(
    written: str, changed: str, expected: Fact
) -> None:
    reply = SEED_REPLY.replace(written, changed)
    sources = [CATALOGUE_PROMPT, BOOKING_RESULT]
    assert ungrounded_facts(reply, sources, today=TODAY) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "Pet: Rex (Golden Retriever, 3 anos)",
        "Tenho 2 pets em casa",
        "Ligue para 11 98888-7777",
        "WhatsApp: +55 11 98888-7777",
        "Fixo: (11) 3333-4444",
        '{"appointment_id": 7, "pet_id": 12, "duration_minutes": 30}',
        "Enviaremos um lembrete 1 hora antes da consulta.",
        "Pode ser na quinta-feira?",
        "Só restam as 3 vagas da tarde.",
        "Dar 1/2 comprimido",
        "Emergência 24/7",
        "Atendimento 24h",
        "Ela custa 120.00 na loja",
    ],
)
def test_extract_facts_ignores_numbers_that_are_no_fact(text: str) -> None:
    assert extract_facts(text, today=TODAY) == []


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("R$ 120,00", 12000),
        ("R$120", 12000),
        ("R$ 1.234,56", 123456),
        ("R$ 1.234", 123400),
        ("R$ 70,83", 7083),
        ("R$ 50", 5000),
        ("R$ 120.00", 12000),
        ("120 reais", 12000),
        ("120,00 reais", 12000),
        ("r$ 0,05", 5),
        ('{"price": "120.00"}', 12000),
        ('{"price_brl": "85.50"}', 8550),
        ('{"unit_price": 70.83}', 7083),
        ('{"price_cents": 12000}', 12000),
        ("{'total_cents': '9500'}", 9500),
    ],
)
def test_extract_facts_reads_money_as_cents(text: str, cents: int) -> None:
    assert kinds_and_values(text) == [("money", cents)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("26/11", (11, 26)),
        ("dia 1/12", (12, 1)),
        ("26/11/2026", (2026, 11, 26)),
        ("26/11/26", (2026, 11, 26)),
        ("2026-11-26", (2026, 11, 26)),
        ("26 de novembro", (11, 26)),
        ("26 de Novembro de 2026", (2026, 11, 26)),
        ("1º de dezembro", (12, 1)),
        ("29/02", (2, 29)),
        ("hoje", (2026, 11, 25)),
        ("amanhã", (2026, 11, 26)),
        ("Amanha", (2026, 11, 26)),
        ("depois de amanhã", (2026, 11, 27)),
        ("quinta-feira, 26/11", (11, 26)),
    ],
)
def test_extract_facts_reads_dates(text: str, value: tuple[int, ...]) -> None:
    assert kinds_and_values(text) == [("date", value)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10:00", (10, 0)),
        ("9:30", (9, 30)),
        ("09:00:00", (9, 0)),
        ("10h", (10, 0)),
        ("10h30", (10, 30)),
        ("10:30h", (10, 30)),
        ("às 10", (10, 0)),
        ("as 9 da manhã", (9, 0)),
        ("Às 14h", (14, 0)),
        ("às 10 e meia", (10, 30)),
    ],
)
def test_extract_facts_reads_times(text: str, value: tuple[int, int]) -> None:
    assert kinds_and_values(text) == [("time", value)]


def test_extract_facts_reads_the_wall_clock_of_an_iso_datetime() -> None:
    assert extract_facts("2026-11-26T10:00:00-03:00", today=TODAY) == [
        Fact("date", (2026, 11, 26), "2026-11-26"),
        Fact("time", (10, 0), "10:00:00"),
    ]


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("R$ 1.234,56", ["money"]),
        ("26/11", ["date"]),
        ("11 98888-7777", []),
        ("26/11 às 10h, R$ 85,00", ["date", "time", "money"]),
    ],
)
def test_extract_facts_reads_no_time_inside_prices_dates_or_phones(
    text: str, kinds: list[str]
) -> None:
    assert [fact.kind for fact in extract_facts(text, today=TODAY)] == kinds


@pytest.mark.parametrize(
    "text",
    ["31/02", "31/04/2026", "2026-02-30", "29/02/2027", "32 de janeiro", "25:00", "10:60", "às 24"],
)
def test_extract_facts_ignores_impossible_dates_and_times(text: str) -> None:
    assert extract_facts(text, today=TODAY) == []


@pytest.mark.parametrize("text", ["a cada 8h", "lembrete 1h antes", "jejum de 12h", "por 2h"])
def test_extract_facts_ignores_durations(text: str) -> None:
    assert extract_facts(text, today=TODAY) == []


@pytest.mark.parametrize(
    ("reply", "ungrounded"),
    [
        ("Tenho 09:00, 10:00 e 11:00. Qual prefere?", []),
        ("Tenho 09:00, 10:00 e 12:00. Qual prefere?", [Fact("time", (12, 0), "12:00")]),
    ],
)
def test_ungrounded_facts_slot_times_must_come_from_availability(
    reply: str, ungrounded: list[Fact]
) -> None:
    availability = json.dumps({"slots": {"manhã": ["09:00", "10:00", "11:00"]}})
    assert ungrounded_facts(reply, [availability], today=TODAY) == ungrounded


@pytest.mark.parametrize(
    ("reply", "source", "grounded"),
    [
        ("26 de novembro", "2026-11-26", True),
        ("26/11", '{"starts_at": "2026-11-26T10:00:00-03:00"}', True),
        ("26/11/2026", "26/11", True),
        ("26/11/2026", "2026-11-26", True),
        ("26/11/2027", "2026-11-26", False),
        ("27/11", "2026-11-26", False),
        ("amanhã", "2026-11-26", True),
        ("hoje", "Hoje é quarta-feira, 25/11/2026.", True),
        ("amanhã", "2027-11-26", False),
    ],
)
def test_ungrounded_facts_matches_dates_by_day_month_and_given_year(
    reply: str, source: str, grounded: bool
) -> None:
    assert (ungrounded_facts(reply, [source], today=TODAY) == []) is grounded


@pytest.mark.parametrize(
    ("reply", "ungrounded"),
    [
        ("Abrimos às 08:00 e fechamos às 18h.", []),
        ("Posso te encaixar às 10:30.", [Fact("time", (10, 30), "às 10:30")]),
    ],
)
def test_ungrounded_facts_opening_hours_ground_only_their_endpoints(
    reply: str, ungrounded: list[Fact]
) -> None:
    assert ungrounded_facts(reply, ["segunda a sexta 08:00-18:00"], today=TODAY) == ungrounded


def test_ungrounded_facts_counts_each_fact_once() -> None:
    reply = "Fica R$ 150,00. Isso mesmo, 150 reais (R$ 150,00)."
    assert ungrounded_facts(reply, [CATALOGUE_PROMPT], today=TODAY) == [
        Fact("money", 15000, "R$ 150,00")
    ]


def test_ungrounded_facts_without_sources_reports_every_fact() -> None:
    assert [fact.kind for fact in ungrounded_facts(SEED_REPLY, [], today=TODAY)] == [
        "date",
        "time",
        "money",
    ]


@given(st.integers(min_value=0, max_value=10**12))
def test_extract_facts_reads_any_formatted_price(cents: int) -> None:
    text = format_brl(cents)
    assert extract_facts(f"Valor: {text}.", today=TODAY) == [Fact("money", cents, text)]
