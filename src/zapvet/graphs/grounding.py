"""Grounding check: the prices, dates and times a reply states that no source backs.

The attendant may only repeat a price, date or time it got from this turn's tool results or its
prompt (catalogue, opening hours, today's date); the caller logs and counts the rest. Facts, as
pt-BR attendants write them:

- money, in cents: "R$ 120,00", "R$ 1.234,56", "120 reais", and JSON keys ending in `price` /
  `price_brl` (decimal reais) or `_cents`. Bare numbers (ages, phones, ids) are never money.
- dates: "26/11", "26/11/2026", "26/11/26", ISO dates and datetimes, "26 de novembro [de 2026]",
  and "hoje" / "amanhã" / "depois de amanhã" against `today`. Weekday names, doses ("1/2") and
  "24/7" are not dates.
- times: "10:00", "9:30", "10h30", "10:30h", "às 10", "às 10 e meia", and an ISO datetime's wall
  clock as written (its UTC offset is ignored). "1h antes", "a cada 8h" and "jejum de 12h" are
  durations, and "as 3 vagas" is an article, so none of them is a time.

Impossible values (31/02, 25:00) are dropped, not reported. Matching is exact on purpose: a time
inside opening hours "08:00-18:00" is not grounded by them, because slot times must come from
`check_availability`; the interval grounds only its endpoints. Totals the model adds up itself
are ungrounded too, so tools should return them. A reply date without a year matches a source
date on the same day and month; one with a year needs that year, or a source date without one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache, partial
from typing import Literal

from zapvet.money import parse_price

FactKind = Literal["money", "date", "time"]


@dataclass(frozen=True)
class Fact:
    """A price (cents), date ((month, day) or (year, month, day)) or time ((hour, minute))."""

    kind: FactKind
    value: int | tuple[int, ...]
    text: str


_Key = tuple[FactKind, int | tuple[int, ...]]
_Reader = Callable[[re.Match[str]], list[Fact]]

# A trailing separator followed by a digit means the number goes on ("1,234", "10:005").
_AMOUNT = r"(?:\d{1,3}(?:\.\d{3})+(?:,\d{1,2})?|\d+(?:,\d{1,2}|\.\d{2})?)(?![.,]?\d)"
_GROUPED = re.compile(r"\d{1,3}(?:\.\d{3})+")

_ISO_RE = re.compile(
    r"(?<!\d)(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:[T ](?P<clock>(?P<hour>\d{2}):(?P<minute>\d{2})(?::\d{2}(?:\.\d+)?)?)"
    r"(?:Z|[+-]\d{2}:?\d{2})?)?(?!\d)"
)
_KEYED_MONEY_RE = re.compile(
    r"""["'](?P<key>\w*(?:price|price_brl|_cents))["']\s*:\s*"""
    r"""(?:(?P<q>["'])(?P<quoted>[^"'\n]{1,40})(?P=q)|(?P<bare>\d+(?:\.\d+)?)(?![\w.]))""",
    re.IGNORECASE,
)
_MONEY_RE = re.compile(
    rf"R\$\s*(?P<brl>{_AMOUNT})(?:\s*rea(?:is|l)\b)?"
    rf"|(?<![\d.,])(?P<reais>{_AMOUNT})\s*rea(?:is|l)\b",
    re.IGNORECASE,
)
_NUMERIC_DATE_RE = re.compile(
    r"(?<![\d/.,:])(?P<day>\d{1,2})/(?P<month>\d{1,2})(?:/(?P<year>\d{4}|\d{2}))?"
    r"(?![\d/]|[.,:]\d)"
)
_WRITTEN_DATE_RE = re.compile(
    r"(?<![\d/.,:])(?P<day>\d{1,2})\s*[º°]?\s+de\s+"
    r"(?P<month>jan(?:eiro)?|fev(?:ereiro)?|mar(?:ço|co)?|abr(?:il)?|mai(?:o)?|jun(?:ho)?"
    r"|jul(?:ho)?|ago(?:sto)?|set(?:embro)?|out(?:ubro)?|nov(?:embro)?|dez(?:embro)?)\b\.?"
    r"(?:\s+de\s+(?P<year>\d{4})(?!\d))?",
    re.IGNORECASE,
)
_RELATIVE_DATE_RE = re.compile(r"\b(?:depois\s+de\s+amanh[ãa]|amanh[ãa]|hoje)\b", re.IGNORECASE)
_TIME_RE = re.compile(
    r"(?:\b(?P<prep>[àa]s)\s+)?(?<![\d/.,:])(?P<hour>\d{1,2})"
    r"(?:(?P<colon>:(?P<minute>\d{2})(?::\d{2})?(?:\s?h(?:rs?|s)?(?!\w))?)"
    r"|(?P<hmark>h(?:(?P<hminute>\d{2})(?:min)?|rs?|s)?(?!\w))"
    r"|(?P<half>\s+e\s+meia\b)?)"
    r"(?!\d|[:/.,]\d)",
    re.IGNORECASE,
)
_DURATION_BEFORE = re.compile(r"\b(?:cada|durante|por|há|ha|em|jejum\s+de)\s+$", re.IGNORECASE)
_DURATION_AFTER = re.compile(r"\s+(?:antes|depois)\b", re.IGNORECASE)
_NEXT_WORD = re.compile(r"\s+(?P<word>[^\W\d_]+)")
# Words that may follow "as 10" when "as" means "at" rather than the article ("as 3 vagas").
_CLOCK_FOLLOWERS = frozenset(
    {"h", "hs", "hr", "hrs", "hora", "horas", "da", "de", "do", "e", "ou", "em", "no", "na"}
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "fev", "mar", "abr", "mai", "jun", "jul", "ago", "set", "out", "nov", "dez"),
        start=1,
    )
}


def extract_facts(text: str, *, today: date) -> list[Fact]:
    """Distinct prices, dates and times in `text`, in the order they first appear."""
    found: list[tuple[int, Fact]] = []
    for pattern, read in _readers(today):
        spans: list[tuple[int, int]] = []
        for match in pattern.finditer(text):
            found.extend((match.start(), fact) for fact in read(match))
            spans.append(match.span())
        # Blanking what one reader took keeps later readers from re-reading its pieces.
        text = _blank(text, spans)
    facts: list[Fact] = []
    seen: set[_Key] = set()
    for _, fact in sorted(found, key=lambda item: item[0]):
        if (fact.kind, fact.value) not in seen:
            seen.add((fact.kind, fact.value))
            facts.append(fact)
    return facts


def ungrounded_facts(reply: str, sources: Iterable[str], *, today: date) -> list[Fact]:
    """The facts of `reply` that appear in none of `sources`, each once, in reply order.

    A reply without facts needs no source read; a source seen before on the same day (the
    organization's system prompt, every turn) is not read again.
    """
    claimed = extract_facts(reply, today=today)
    if not claimed:
        return []
    known: set[_Key] = set().union(*(_source_facts(source, today) for source in sources))
    month_days = {
        value[-2:] for kind, value in known if kind == "date" and isinstance(value, tuple)
    }
    return [fact for fact in claimed if not _grounded(fact, known, month_days)]


@lru_cache(maxsize=512)
def _source_facts(source: str, today: date) -> frozenset[_Key]:
    return frozenset((fact.kind, fact.value) for fact in extract_facts(source, today=today))


def _grounded(fact: Fact, known: set[_Key], month_days: set[tuple[int, ...]]) -> bool:
    if fact.kind != "date" or not isinstance(fact.value, tuple):
        return (fact.kind, fact.value) in known
    if len(fact.value) == 2:
        return fact.value in month_days
    return ("date", fact.value) in known or ("date", fact.value[1:]) in known


def _read_iso(match: re.Match[str]) -> list[Fact]:
    day = _date_fact(match["year"], match["month"], match["day"], match[0][:10])
    if day is None:
        return []
    if match["clock"] is None:
        return [day]
    clock = _time_fact(int(match["hour"]), int(match["minute"]), match["clock"])
    return [day] if clock is None else [day, clock]


def _read_keyed_money(match: re.Match[str]) -> list[Fact]:
    raw = match["quoted"] if match["quoted"] is not None else match["bare"]
    if match["key"].lower().endswith("_cents"):
        digits = raw.strip()
        return [Fact("money", int(digits), raw)] if digits.isascii() and digits.isdigit() else []
    try:
        return [Fact("money", parse_price(raw), raw)]
    except ValueError:
        return []


def _read_money(match: re.Match[str]) -> list[Fact]:
    amount = match["brl"] or match["reais"]
    # parse_price reads "1.234" as decimals; in text after "R$" the dot groups thousands.
    if _GROUPED.fullmatch(amount):
        amount = amount.replace(".", "")
    return [Fact("money", parse_price(amount), match[0])]


def _read_numeric_date(match: re.Match[str]) -> list[Fact]:
    day, month, year = match["day"], match["month"], match["year"]
    if year is None and (len(day) == len(month) == 1 or match[0] == "24/7"):
        return []  # "1/2 comprimido" is a dose and "24/7" is round the clock, not dates
    if year is not None and len(year) == 2:
        year = f"20{year}"
    fact = _date_fact(year, month, day, match[0])
    return [] if fact is None else [fact]


def _read_written_date(match: re.Match[str]) -> list[Fact]:
    month = str(_MONTHS[match["month"][:3].lower()])
    fact = _date_fact(match["year"], month, match["day"], match[0])
    return [] if fact is None else [fact]


def _read_relative_date(match: re.Match[str], *, today: date) -> list[Fact]:
    word = match[0].lower()
    offset = 2 if word.startswith("depois") else 1 if word.startswith("amanh") else 0
    day = today + timedelta(days=offset)
    return [Fact("date", (day.year, day.month, day.day), match[0])]


def _read_time(match: re.Match[str]) -> list[Fact]:
    bare = match["colon"] is None and match["hmark"] is None
    prep = match["prep"]
    if prep is None:
        before = match.string[max(0, match.start() - 20) : match.start()]
        if (
            bare
            or _DURATION_BEFORE.search(before)
            or _DURATION_AFTER.match(match.string, match.end())
        ):
            return []
    elif bare and prep.lower() == "as":
        follower = _NEXT_WORD.match(match.string, match.end())
        if follower is not None and follower["word"].lower() not in _CLOCK_FOLLOWERS:
            return []
    minute = match["minute"] or match["hminute"] or ("30" if match["half"] else "0")
    fact = _time_fact(int(match["hour"]), int(minute), match[0])
    return [] if fact is None else [fact]


def _date_fact(year: str | None, month: str, day: str, text: str) -> Fact | None:
    try:
        # A leap year accepts 29/02 when the text names no year.
        valid = date(int(year) if year else 2000, int(month), int(day))
    except ValueError:
        return None
    if year is None:
        return Fact("date", (valid.month, valid.day), text)
    return Fact("date", (valid.year, valid.month, valid.day), text)


def _time_fact(hour: int, minute: int, text: str) -> Fact | None:
    if hour > 23 or minute > 59:
        return None
    return Fact("time", (hour, minute), text)


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    pieces: list[str] = []
    last = 0
    for start, end in spans:
        pieces += [text[last:start], " " * (end - start)]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _readers(today: date) -> tuple[tuple[re.Pattern[str], _Reader], ...]:
    # Order matters: ISO datetimes before times (their UTC offset is no time), prices before
    # dates, and written dates before numeric ones.
    return (
        (_ISO_RE, _read_iso),
        (_KEYED_MONEY_RE, _read_keyed_money),
        (_MONEY_RE, _read_money),
        (_WRITTEN_DATE_RE, _read_written_date),
        (_NUMERIC_DATE_RE, _read_numeric_date),
        (_RELATIVE_DATE_RE, partial(_read_relative_date, today=today)),
        (_TIME_RE, _read_time),
    )
