"""Money as integer cents: parsing prices people write, formatting them the Brazilian way."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


def parse_price(value: str | int | float) -> int:
    """Cents for a price in reais: "120.00", "120,00", "1.234,56", 120 or 120.5.

    Raises:
        ValueError: negative, more than two decimals, or not a number.
    """
    if isinstance(value, bool):
        raise ValueError('expected a price like "120.00"')
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(repr(value))  # shortest round-trip text: 70.83 stays 70.83
    else:
        text = value.strip().removeprefix("R$").strip()
        if "," in text:
            text = text.replace(".", "").replace(",", ".")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise ValueError(f'expected a price like "120.00", got {value!r}') from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"expected a non-negative price, got {value!r}")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"a price has at most two decimals, got {value!r}")
    return int(cents)


def format_brl(cents: int) -> str:
    """`R$ 1.234,56` for 123456 cents (negative amounts keep their sign: `-R$ 5,00`)."""
    sign = "-" if cents < 0 else ""
    reais, centavos = divmod(abs(cents), 100)
    grouped = f"{reais:,}".replace(",", ".")
    return f"{sign}R$ {grouped},{centavos:02d}"


def format_percent(fraction: Decimal) -> str:
    """A share as Brazilians write it, one decimal: 0.3458 → "34,6%"."""
    return f"{fraction * 100:.1f}%".replace(".", ",")
