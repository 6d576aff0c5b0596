"""The price table: cached tokens at the cached rate, the exchange rate, one rounding."""

from __future__ import annotations

from decimal import Decimal

from zapvet.pricing import (
    DEFAULT_PRICES,
    ModelPrice,
    PriceTable,
    Usage,
    share,
    stored_pricing,
    to_cents,
)


def test_cached_tokens_are_priced_at_the_cached_rate() -> None:
    table = PriceTable(usd_brl=Decimal("5.40"))
    usage = Usage(input_tokens=10_000_000, cached_input_tokens=4_000_000, output_tokens=2_000_000)
    # 6M uncached × 0.15 + 4M cached × 0.075 + 2M × 0.60 = US$ 2.40 → R$ 12.96
    assert table.cost_brl("gpt-4o-mini", usage, None) == Decimal("12.96")
    all_uncached = Usage(input_tokens=10_000_000, output_tokens=2_000_000)
    assert table.cost_brl("gpt-4o-mini", all_uncached, None) == Decimal("14.58")  # US$ 2.70


def test_the_exchange_rate_and_transcription_minutes() -> None:
    table = PriceTable(usd_brl=Decimal("5.00"))
    ten_minutes = Usage(audio_seconds=Decimal(600))
    assert table.cost_brl(None, ten_minutes, "whisper-1") == Decimal("0.30")  # 10 × 0.006 × 5
    assert table.cost_brl(None, ten_minutes, "gpt-4o-mini-transcribe") == Decimal("0.15")


def test_cents_round_half_up_once() -> None:
    assert to_cents(Decimal("0.005")) == 1
    assert to_cents(Decimal("0.00499999")) == 0
    assert to_cents(Decimal("12.345")) == 1235
    # 1,234 gpt-4o output tokens: 1234 × 10 / 1e6 × 5.40 = R$ 0.066636 → 7 centavos
    usage = Usage(output_tokens=1234)
    exact = PriceTable().cost_brl("gpt-4o", usage, None)
    assert exact == Decimal("0.066636") and to_cents(exact) == 7


def test_a_dated_snapshot_is_priced_as_its_model_and_an_unknown_one_is_flagged() -> None:
    table = PriceTable()
    assert table.lookup("gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert table.lookup("gpt-4o-2024-08-06") == "gpt-4o"
    assert table.lookup("gpt-4o-mini-transcribe") == "gpt-4o-mini-transcribe"
    assert table.lookup("llama-3") is None
    usage = Usage(input_tokens=1000, output_tokens=10, audio_seconds=Decimal(30))
    assert table.cost_brl("llama-3", usage, "mystery-stt") == 0
    assert table.unpriced("llama-3", usage, "mystery-stt") == {"llama-3", "mystery-stt"}
    assert table.unpriced("gpt-4o", usage, "whisper-1") == set()
    assert table.unpriced("llama-3", Usage(), None) == set()  # nothing used, nothing to price


def test_an_organizations_prices_lay_over_the_defaults() -> None:
    stored = stored_pricing(
        Decimal("5.10"),
        {"gpt-4o": ModelPrice(Decimal("2"), Decimal("1"), Decimal("8")), "llama-3": ModelPrice()},
    )
    assert stored == {
        "usd_brl": "5.10",
        "models": {
            "gpt-4o": {
                "input_per_million": "2",
                "cached_input_per_million": "1",
                "output_per_million": "8",
                "transcription_per_minute": "0",
            },
            "llama-3": {
                "input_per_million": "0",
                "cached_input_per_million": "0",
                "output_per_million": "0",
                "transcription_per_minute": "0",
            },
        },
    }
    table = PriceTable().overridden(stored)
    assert table.usd_brl == Decimal("5.10")
    assert table.models["gpt-4o"].output_per_million == Decimal("8")
    assert table.models["gpt-4o-mini"] == DEFAULT_PRICES["gpt-4o-mini"]
    assert table.unpriced("llama-3", Usage(input_tokens=5), None) == set()  # priced, at zero
    assert PriceTable().overridden(None) == PriceTable()
    rate_only = PriceTable().overridden(stored_pricing(None, {"x": ModelPrice()}))
    assert rate_only.usd_brl == Decimal("5.40")


def test_cache_share_rounds_to_four_places() -> None:
    assert share(1, 3) == Decimal("0.3333")
    assert share(2, 3) == Decimal("0.6667")
    assert share(5, 0) == 0
