"""`[pricing]` in the organization file: decimal strings only, clear errors, stored by apply."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlmodel import Session

from tests.conftest import EXAMPLE_ORG
from zapvet.errors import OrgFileError
from zapvet.models import AISettings
from zapvet.org import apply_spec, parse_spec
from zapvet.pricing import PriceTable

#: The example without its own [pricing] block, so each test writes the one it needs.
BASE = EXAMPLE_ORG.read_text().split("\n[pricing]")[0].rsplit("\n# AI cost", 1)[0]


def _problems(pricing: str) -> list[str]:
    text = BASE + pricing
    with pytest.raises(OrgFileError) as caught:
        parse_spec(text, "org.toml")
    return [str(problem) for problem in caught.value.problems]


def _line(pricing: str, fragment: str) -> int:
    text = BASE + pricing
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_the_example_prices_its_models_in_reais() -> None:
    spec = parse_spec(EXAMPLE_ORG.read_text())
    assert spec.pricing.usd_brl == Decimal("5.40")
    prices = spec.pricing.prices()
    assert prices["gpt-4o-mini"].cached_input_per_million == Decimal("0.075")
    assert prices["gpt-4o-mini-transcribe"].transcription_per_minute == Decimal("0.003")
    assert prices["gpt-4o-mini-transcribe"].input_per_million == 0


def test_a_float_price_is_refused_with_its_line() -> None:
    pricing = '\n[[pricing.models]]\nname = "gpt-4o"\ninput_per_million = 2.5\n'
    line = _line(pricing, "2.5")
    assert _problems(pricing) == [
        f"line {line}: pricing.models[1].input_per_million: write it as a decimal string like "
        '"0.15", not 2.5: floats lose cents'
    ]


def test_bad_rates_and_prices_are_each_named() -> None:
    pricing = (
        '\n[pricing]\nusd_brl = "0"\n'
        '\n[[pricing.models]]\nname = "gpt-4o"\noutput_per_million = "dez"\n'
        '\n[[pricing.models]]\nname = "gpt-4.1"\ncached_input_per_million = "-1"\n'
        '\n[[pricing.models]]\nname = "llama"\n'
        '\n[[pricing.models]]\nname = "gpt-4o"\nprice = "1"\n'
    )
    problems = _problems(pricing)
    negative = _line(pricing, '"-1"')
    assert (
        f"line {_line(pricing, 'usd_brl')}: pricing.usd_brl: the exchange rate must be above zero"
        in problems
    )
    assert (
        f"line {_line(pricing, 'dez')}: pricing.models[1].output_per_million: expected a decimal "
        "string like \"0.15\", got 'dez'"
    ) in problems
    assert (
        f"line {negative}: pricing.models[2].cached_input_per_million: expected a "
        "non-negative amount, got '-1'"
    ) in problems
    assert any(
        p.startswith("line") and "pricing.models[3]: give at least one of" in p for p in problems
    )
    unknown = _line(pricing, 'price = "1"')
    assert f"line {unknown}: pricing.models[4].price: unknown key" in problems


def test_a_model_priced_twice_is_refused() -> None:
    pricing = (
        '\n[[pricing.models]]\nname = "gpt-4o"\ninput_per_million = "2"\n'
        '\n[[pricing.models]]\nname = "gpt-4o"\ninput_per_million = "3"\n'
    )
    found = enumerate((BASE + pricing).splitlines(), 1)
    line = [n for n, text in found if text == 'name = "gpt-4o"'][1]
    assert _problems(pricing) == [f"line {line}: pricing.models[2].name: duplicate name 'gpt-4o'"]


def test_apply_stores_the_prices_and_a_second_apply_changes_nothing(session: Session) -> None:
    pricing = (
        '\n[pricing]\nusd_brl = "5.10"\n'
        '\n[[pricing.models]]\nname = "llama-3"\ninput_per_million = "0.20"\n'
        'output_per_million = "0.80"\n'
    )
    report = apply_spec(session, parse_spec(BASE + pricing))
    settings = session.get(AISettings, report.organization_id)
    assert settings is not None and settings.pricing == {
        "usd_brl": "5.10",
        "models": {
            "llama-3": {
                "input_per_million": "0.20",
                "cached_input_per_million": "0.20",  # the input price unless stated
                "output_per_million": "0.80",
                "transcription_per_minute": "0",
            }
        },
    }
    session.commit()
    assert apply_spec(session, parse_spec(BASE + pricing)).changes == []
    table = PriceTable().overridden(settings.pricing)
    assert table.usd_brl == Decimal("5.10") and table.lookup("llama-3") == "llama-3"

    without = apply_spec(session, parse_spec(BASE))
    assert any(change.startswith("ai: pricing") for change in without.changes)
    session.commit()
    session.refresh(settings)
    assert settings.pricing is None
