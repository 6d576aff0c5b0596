"""Phone numbers and WhatsApp ids: normalisation and the Brazilian ninth-digit rule.

WhatsApp never re-keyed accounts registered before Brazil added the ninth mobile digit, so
one person may arrive as `5511988887777` or `551188887777`. Matching uses `phone_key`,
which maps both spellings of a Brazilian mobile to the legacy 8-digit form.
"""

from __future__ import annotations

import re

_NON_DIGITS = re.compile(r"\D+")
BRAZIL = "55"


def digits_only(raw: str) -> str:
    return _NON_DIGITS.sub("", raw)


def normalise_phone(raw: str, *, default_country: str = BRAZIL) -> str:
    """International digits for a phone typed by a person ("+55 (11) 98888-7777").

    A number without country code (10 or 11 digits: DDD + number) is taken as Brazilian.

    Raises:
        ValueError: not a plausible phone number.
    """
    number = digits_only(raw)
    if not raw.strip().startswith("+") and len(number) in (10, 11) and not number.startswith("0"):
        number = default_country + number
    if not 10 <= len(number) <= 15:
        raise ValueError(f"not a phone number: expected 10 to 15 digits, got {len(number)}")
    return number


def phone_key(number: str) -> str:
    """The canonical matching key: Brazilian mobiles lose the ninth digit, others unchanged."""
    number = digits_only(number)
    if number.startswith(BRAZIL) and len(number) in (12, 13):
        ddd, local = number[2:4], number[4:]
        if len(local) == 9 and local[0] == "9" and local[1] in "6789":
            return BRAZIL + ddd + local[1:]
    return number


def phone_variants(number: str) -> tuple[str, ...]:
    """Both spellings WhatsApp may use for `number` (with and without the ninth digit)."""
    number = digits_only(number)
    key = phone_key(number)
    if key.startswith(BRAZIL) and len(key) == 12 and key[4] in "6789":
        return (key[:4] + "9" + key[4:], key)
    return (number,)
