"""Personal data and secrets out of telemetry: the last filter before spans and logs leave.

By default no message text, phone number, contact name or secret reaches a span attribute,
a span event or a log line: content attributes are blanked, phone numbers become `<phone>`,
and token-bearing query parameters become `REDACTED` (the Cloud API's `hub.verify_token`
arrives in a URL the HTTP instrumentation records). `capture_content`
(ZAPVET_CAPTURE_CONTENT=true) keeps content and phones, for development only; secrets are
redacted always.

Only phone numbers are masked: dates, times, prices, ids and timestamps stay readable, since
they are what a booking is debugged with. A run of digits is a phone when it is the user of
a WhatsApp JID, starts with `+` and has a possible length for its country, or is shaped
like a number WhatsApp or a person writes (`5511988887777`, `11988887777`,
`(11) 98888-7777`, `98888-7777`) and is valid in the numbering plan (`phonenumbers`),
including the legacy 8-digit Brazilian mobile form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException

#: Attributes that carry conversation content (GenAI semconv, OpenInference, our own).
CONTENT_KEYS = frozenset(
    {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.tool.definitions",
        "input.value",
        "output.value",
        "zapvet.message.text",
        "zapvet.reply.text",
        "zapvet.sender.phone",
        "zapvet.sender.name",
        "messageContent",
        "from",
        "contactName",
    }
)
#: The user part of a person's JID (`5511988887777:12@s.whatsapp.net`, `…@lid`), and the
#: creator's phone in an old-style group id (`5511988887777-1609876543@g.us`).
_JID_USER = re.compile(
    r"(?<![\w.+-])\d{5,20}(?=(?:_\d+)?(?::\d+)?@(?:s\.whatsapp\.net|c\.us|lid|hosted(?:\.lid)?)\b"
    r"|-\d+@g\.us\b)"
)
#: Digits that may be a phone: an optional `+`, an optional `(DDD)`, then digit groups joined
#: by one space, dot or hyphen, eight digits at least. Not inside a word, a decimal
#: ("1.234,56") or an id; atomic, so a long run of digits is scanned once.
_CANDIDATE = re.compile(
    r"(?<![\w.,+-])(?=[+(\d][\d \t.()+-]{7})(?=(?:[ \t.()+-]{0,3}\d){8})"
    r"(?>(?:\+[ \t]?)?(?:(?:\d{1,3}[ \t]?)?\(\d{2,3}\)[ \t]?)?\d+(?:[ \t.-]\d+)*)"
    r"(?!\w|[.,-]\d)"
)
_WORD_GAP = re.compile(r"(?<=[\d)])[ \t](?=[\d(])")
_LOCAL_MOBILE = re.compile(r"9\d{4}-\d{4}")  # a Brazilian mobile without its DDD
_MAX_WORDS = 6  # "+55 11 9 8888 7777" is five
_BRAZIL = "55"
_SECRET_QUERY = re.compile(
    r"((?:hub\.verify_token|verify_token|access_token|token|apikey|api_key|key)=)[^&\s\"']+",
    re.IGNORECASE,
)
_SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "x-webhook-token", "access_token"})


def _valid(international: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(international))
    except NumberParseException:
        return False


def _brazilian(national: str) -> bool:
    """DDD + number, valid today or in the legacy 8-digit mobile form WhatsApp still sends."""
    if _valid(f"+{_BRAZIL}{national}"):
        return True
    legacy = len(national) == 10 and national[2] in "6789"
    return legacy and _valid(f"+{_BRAZIL}{national[:2]}9{national[2:]}")


@lru_cache(maxsize=4096)
def is_phone(text: str) -> bool:
    """Whether `text` (digits with optional `+`, parentheses and separators) is a phone."""
    digits = "".join(char for char in text if char.isdigit())
    if not 8 <= len(digits) <= 15:
        return False
    if text.startswith("+"):
        try:
            return phonenumbers.is_possible_number(phonenumbers.parse(f"+{digits}"))
        except NumberParseException:
            return False
    with_country = len(digits) in (12, 13) and digits.startswith(_BRAZIL)
    national = digits[2:] if with_country else digits
    if digits == text:
        # A bare run: as WhatsApp writes numbers (country code first), or DDD + a 9-digit
        # mobile. DDD + 8 digits is left alone: Unix timestamps look the same, and WhatsApp
        # always sends the country code.
        if with_country and _brazilian(national):
            return True
        if len(digits) == 11 and _valid(f"+{_BRAZIL}{digits}"):
            return True
        return len(digits) >= 11 and _valid(f"+{digits}")
    if _LOCAL_MOBILE.fullmatch(text):
        return True
    return len(national) in (10, 11) and _brazilian(national)


def _mask_phones(match: re.Match[str]) -> str:
    """The candidate with each phone in it masked: the longest run of its words that is one.

    Words are the space-separated parts, so "idade 5 11 98888-7777" keeps its "5" and a
    date written next to a phone stays readable.
    """
    text = match.group()
    gaps = [gap.start() for gap in _WORD_GAP.finditer(text)]
    starts, ends = [0, *(gap + 1 for gap in gaps)], [*gaps, len(text)]
    pieces: list[str] = []
    done = first = 0
    while first < len(starts):
        for last in range(min(len(starts), first + _MAX_WORDS), first, -1):
            if is_phone(text[starts[first] : ends[last - 1]]):
                pieces += [text[done : starts[first]], "<phone>"]
                done, first = ends[last - 1], last
                break
        else:
            first += 1
    return "".join([*pieces, text[done:]])


def scrub_text(value: str, *, capture: bool) -> str:
    """`value` with secrets (always) and phone numbers (unless capturing) replaced."""
    # The membership tests skip regexes that cannot match: this runs on every span attribute.
    cleaned = _SECRET_QUERY.sub(r"\1REDACTED", value) if "=" in value else value
    if capture:
        return cleaned
    if "@" in cleaned:
        cleaned = _JID_USER.sub("<phone>", cleaned)
    return _CANDIDATE.sub(_mask_phones, cleaned)


def scrub_value(value: Any, *, capture: bool) -> Any:
    if isinstance(value, str):
        return scrub_text(value, capture=capture)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return type(value)(scrub_value(item, capture=capture) for item in value)  # type: ignore[call-arg]
    return value


def scrub_attributes(attributes: Mapping[str, Any] | None, *, capture: bool) -> dict[str, Any]:
    """A copy of span (or log) attributes safe to export."""
    cleaned: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if key.lower() in _SECRET_KEYS:
            cleaned[key] = "REDACTED"
        elif key in CONTENT_KEYS and not capture:
            cleaned[key] = "<redacted>"
        else:
            cleaned[key] = scrub_value(value, capture=capture)
    return cleaned
