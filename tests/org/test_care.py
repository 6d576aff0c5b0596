"""`[care]` and `[[services]] return_after_days`: documented defaults, clear errors, applied."""

from __future__ import annotations

from datetime import time

import pytest
from sqlmodel import Session, select

from tests.conftest import EXAMPLE_ORG
from zapvet.errors import OrgFileError
from zapvet.models import AISettings, Service
from zapvet.org import apply_spec, parse_spec

EXAMPLE = EXAMPLE_ORG.read_text()
_BLOCK = EXAMPLE.index("[care]\n")
WITHOUT = EXAMPLE[:_BLOCK] + EXAMPLE[EXAMPLE.index("\n\n", _BLOCK) + 2 :]


def test_a_file_without_care_gets_it_off_and_the_example_states_the_other_defaults() -> None:
    assert "[care]" not in WITHOUT
    absent, example = parse_spec(WITHOUT).care, parse_spec(EXAMPLE).care
    assert absent.enabled is False and example.enabled is True
    assert absent.model_dump(exclude={"enabled"}) == example.model_dump(exclude={"enabled"})
    assert absent.stored() == {
        "care_enabled": False,
        "care_hours_start": time(9),
        "care_hours_end": time(18),
        "care_weekdays": 0b0111111,
        "care_daily_cap": 20,
        "care_cooldown_days": 30,
    }
    cycles = {s.name: s.return_after_days for s in parse_spec(EXAMPLE).services}
    assert cycles["Banho"] == 21 and cycles["Vacina V10"] == 365
    assert cycles["Consulta Veterinária Geral"] is None


@pytest.mark.parametrize(
    ("old", "new", "key", "words", "line_of"),
    [
        ('hours = "09:00-18:00"', 'hours = "18:00-09:00"', "care.hours", "closes before", None),
        ('hours = "09:00-18:00"', 'hours = "9h"', "care.hours", "interval", None),
        # An item of a list is located at its table (`spec.locate`).
        ('"fri", "sat"]', '"fri", "sab"]', "care.weekdays[6]", "'mon'", "[care]"),
        ('"fri", "sat"]', '"fri", "fri"]', "care.weekdays", "twice", None),
        ("daily_cap = 20", "daily_cap = -1", "care.daily_cap", "greater than or equal", None),
        ("cooldown_days = 30 ", "cooldown_days = 0 ", "care.cooldown_days", "greater than", None),
        ("return_after_days = 21 ", "return_after_days = 0 ", "services[1].return_after_days",
         "greater than or equal to 1", None),
        ("enabled = true", "enabled = true\nevery = 3", "care.every", "unknown key", None),
    ],
)  # fmt: skip
def test_a_bad_care_key_is_refused_with_its_key_and_line(
    old: str, new: str, key: str, words: str, line_of: str | None
) -> None:
    assert old in EXAMPLE
    text = EXAMPLE.replace(old, new, 1)
    with pytest.raises(OrgFileError) as caught:
        parse_spec(text, "org.toml")
    (problem,) = caught.value.problems
    assert problem.key == key and words in problem.message
    changed = line_of or new.splitlines()[-1]
    assert problem.line == next(n for n, line in enumerate(text.splitlines(), 1) if changed in line)


def test_apply_stores_care_and_cycles_and_reports_the_change(session: Session) -> None:
    report = apply_spec(session, parse_spec(EXAMPLE))
    session.commit()
    settings = session.get(AISettings, report.organization_id)
    assert settings is not None and settings.care_enabled
    assert (settings.care_weekdays, settings.care_daily_cap) == (0b0111111, 20)
    banho = session.exec(select(Service).where(Service.name == "Banho")).one()
    assert banho.return_after_days == 21

    weekends = EXAMPLE.replace('weekdays = ["mon", "tue", "wed", "thu", "fri", "sat"]',
                               'weekdays = ["sat", "sun"]').replace(
        "return_after_days = 21 ", "return_after_days = 28 ")  # fmt: skip
    changes = apply_spec(session, parse_spec(weekends)).changes
    assert sorted(changes) == [
        "ai: care_weekdays 63 → 96",
        "service 'Banho': return_after_days 21 → 28",
    ]
    session.commit()
    assert apply_spec(session, parse_spec(weekends)).changes == []
