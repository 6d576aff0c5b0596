"""Phone numbers written in organization files, checked against the numbering plan.

`phonenumbers` (libphonenumber's metadata) knows which area codes and lengths exist, so a
typo such as `+55 20 91234-5678` (Brazil has no DDD 20) is refused when the file is
applied, not discovered when the owner's messages never reach Aurora. A Brazilian mobile
may also be written in the legacy 8-digit form WhatsApp still uses for accounts registered
before the ninth digit (`+55 11 8888-7777`): it is accepted as written, and matching
(`bridge.identity.phone_key`) treats both spellings as one number.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType

from zapvet.bridge.identity import BRAZIL, normalise_phone

_BRAZIL_CODE = int(BRAZIL)


def _valid(digits: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(f"+{digits}"))
    except NumberParseException:
        return False


def _legacy_mobile(national: str) -> bool:
    """A Brazilian DDD + 8-digit number that is a valid mobile once the ninth digit is added."""
    if len(national) != 10 or national[2] not in "6789":
        return False
    modern = phonenumbers.parse(f"+{BRAZIL}{national[:2]}9{national[2:]}")
    return phonenumbers.is_valid_number(modern) and phonenumbers.number_type(modern) in (
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )


def _area_code_exists(ddd: str) -> bool:
    # Every Brazilian DDD has 9-digit mobiles and 8-digit landlines: if neither shape is
    # valid under `ddd`, the area code itself is what does not exist.
    return _valid(f"{BRAZIL}{ddd}987654321") or _valid(f"{BRAZIL}{ddd}33334444")


def _problem(number: PhoneNumber) -> str:
    national = str(number.national_number)
    if number.country_code == _BRAZIL_CODE:
        if len(national) in (10, 11) and not _area_code_exists(national[:2]):
            return f"area code {national[:2]} does not exist in Brazil"
        return (
            "not a Brazilian number (DDD + a 9-digit mobile or an 8-digit landline; "
            "numbers of other countries start with + and their country code)"
        )
    return f"not a valid number for country code +{number.country_code}"


def checked_phone(raw: str) -> str:
    """International digits of a phone typed by a person, refused unless it can exist.

    Without a country code a number is taken as Brazilian ("11 98888-7777").

    Raises:
        ValueError: why the number cannot be a phone number (e.g. an unknown area code).
    """
    digits = normalise_phone(raw)
    try:
        number = phonenumbers.parse(f"+{digits}")
    except NumberParseException as exc:
        reason = (
            "unknown country code"
            if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE
            else "not a number"
        )
        raise ValueError(f"{raw!r} is not a phone number: {reason}") from None
    if phonenumbers.is_valid_number(number):
        return digits
    if number.country_code == _BRAZIL_CODE and _legacy_mobile(str(number.national_number)):
        return digits
    raise ValueError(f"{raw!r} is not a valid phone number: {_problem(number)}")
