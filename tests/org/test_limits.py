"""`[limits]` in the organization file: documented defaults, clear errors, applied by apply."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from tests.conftest import EXAMPLE_ORG
from zapvet.errors import OrgFileError
from zapvet.models import AISettings
from zapvet.models.organization import LIMIT_DEFAULTS
from zapvet.org import apply_spec, parse_spec

EXAMPLE = EXAMPLE_ORG.read_text()
#: The example without its [limits] block (up to the blank line that ends it): what an
#: organization file that says nothing gets.
_BLOCK = EXAMPLE.index("[limits]\n")
WITHOUT = EXAMPLE[:_BLOCK] + EXAMPLE[EXAMPLE.index("\n\n", _BLOCK) + 2 :]
#: The limits' defaults, and no monthly budget.
DEFAULTS = {**LIMIT_DEFAULTS, "monthly_budget_brl": None, "over_budget": "hand_to_human"}


def test_the_example_states_the_defaults_and_a_file_without_limits_gets_them() -> None:
    assert "[limits]" not in WITHOUT and "over_budget" not in WITHOUT
    for name in (*LIMIT_DEFAULTS, "monthly_budget_brl", "over_budget"):
        assert f"\n{name} = " in EXAMPLE
    for text in (EXAMPLE, WITHOUT):
        assert parse_spec(text).limits.model_dump() == DEFAULTS


def test_a_limit_below_one_or_not_a_number_is_refused_with_its_line() -> None:
    text = EXAMPLE.replace("contact_messages_per_day = 300", 'contact_messages_per_day = "muitas"')
    text = text.replace("org_turns_per_minute = 600", "org_turns_per_minute = 0")
    with pytest.raises(OrgFileError) as caught:
        parse_spec(text, "org.toml")
    problems = " | ".join(str(problem) for problem in caught.value.problems)
    assert "limits.contact_messages_per_day" in problems
    assert "limits.org_turns_per_minute" in problems and "greater than or equal to 1" in problems
    lines = text.splitlines()
    assert f"line {lines.index('org_turns_per_minute = 0') + 1}" in problems


def test_apply_stores_the_limits_and_reports_a_change(session: Session) -> None:
    report = apply_spec(session, parse_spec(EXAMPLE))
    settings = session.get(AISettings, report.organization_id)
    assert settings is not None and settings.contact_messages_per_minute == 20
    session.commit()
    tighter = EXAMPLE.replace("contact_messages_per_minute = 20", "contact_messages_per_minute = 5")
    changes = apply_spec(session, parse_spec(tighter)).changes
    assert changes == ["ai: contact_messages_per_minute 20 → 5"]
    session.commit()
    session.refresh(settings)
    assert settings.contact_messages_per_minute == 5
    assert apply_spec(session, parse_spec(tighter)).changes == []


def budget(text: str, value: str, behaviour: str = '"hand_to_human"') -> str:
    """The example with `[limits] monthly_budget_brl = value` and `over_budget = behaviour`."""
    text = text.replace('monthly_budget_brl = ""', f"monthly_budget_brl = {value}")
    return text.replace('over_budget = "hand_to_human"', f"over_budget = {behaviour}")


@pytest.mark.parametrize(
    ("value", "cents"),
    [('"150.00"', 15000), ('"1.234,56"', 123456), ('"0"', 0), ("150", 15000), ('""', None)],
)
def test_a_monthly_budget_in_reais_is_kept_in_centavos(value: str, cents: int | None) -> None:
    limits = parse_spec(budget(EXAMPLE, value, '"fallback_only"')).limits
    assert limits.monthly_budget_brl == cents
    assert limits.over_budget == "fallback_only"
    assert limits.stored()["monthly_budget_cents"] == cents
    assert "monthly_budget_brl" not in limits.stored()


@pytest.mark.parametrize("value", ['"-10.00"', '"muito"', '"150.001"', "true", "-5"])
def test_a_budget_that_is_not_an_amount_is_refused_with_its_line(value: str) -> None:
    text = budget(EXAMPLE, value)
    with pytest.raises(OrgFileError) as caught:
        parse_spec(text, "org.toml")
    (problem,) = caught.value.problems
    assert "limits.monthly_budget_brl" in str(problem)
    assert 'amount in reais like "150.00"' in str(problem)
    line = text.splitlines().index(f"monthly_budget_brl = {value}") + 1
    assert f"line {line}" in str(problem)


def test_an_unknown_over_budget_behaviour_is_refused_naming_the_choices() -> None:
    with pytest.raises(OrgFileError) as caught:
        parse_spec(budget(EXAMPLE, '"150.00"', '"stop"'), "org.toml")
    (problem,) = caught.value.problems
    assert "limits.over_budget" in str(problem)
    assert "hand_to_human" in str(problem) and "fallback_only" in str(problem)


def test_apply_stores_the_budget_in_centavos_and_reports_it_in_reais(session: Session) -> None:
    report = apply_spec(session, parse_spec(EXAMPLE))
    settings = session.get(AISettings, report.organization_id)
    assert settings is not None and settings.monthly_budget_cents is None
    assert settings.over_budget == "hand_to_human"
    session.commit()
    changes = apply_spec(session, parse_spec(budget(EXAMPLE, '"150.00"', '"fallback_only"')))
    assert changes.changes == [
        "ai: monthly_budget_cents None → R$ 150,00",
        "ai: over_budget 'hand_to_human' → 'fallback_only'",
    ]
    session.commit()
    session.refresh(settings)
    assert (settings.monthly_budget_cents, settings.over_budget) == (15000, "fallback_only")
