"""Reading webhook JSON tolerantly: numbers in every serialisation, timestamps, typed fields.

Providers change how they serialise between versions (Evolution sent Longs as strings
before 2.3.6 and as `{low, high}` after), so readers accept every form seen and turn
anything else into `PayloadError`, never another exception.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from zapvet.bridge.events import PayloadError

# A seconds timestamp above this would be after the year 5000: it must be milliseconds.
_MILLIS_ABOVE = 100_000_000_000
_MAX_NUMBER_TEXT = 40


def short(value: Any) -> str:
    """`value` named for an error message: containers by type, scalars cut to a short repr."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(f"{what} must be an object, got {short(value)}")
    return value


def items(value: Any, what: str) -> list[Any]:
    """A JSON array; absent (None) reads as empty."""
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise PayloadError(f"{what} must be an array, got {short(value)}")
    return list(value)


def objects(value: Any) -> list[Mapping[str, Any]]:
    """The objects in an optional array, for details a message can do without."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def sub(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """`parent[key]` if it is an object, else an empty one: for optional nested fields."""
    value = parent.get(key)
    return value if isinstance(value, Mapping) else {}


def text(parent: Mapping[str, Any], key: str) -> str | None:
    """`parent[key]` if it is a non-empty string."""
    value = parent.get(key)
    return value if isinstance(value, str) and value else None


def required_text(parent: Mapping[str, Any], key: str, what: str) -> str:
    value = text(parent, key)
    if value is None:
        raise PayloadError(f"{what} needs a non-empty string {key!r}, got {short(parent.get(key))}")
    return value


def number(value: Any) -> int | float | None:
    """An int, a float, a numeric string or a protobuf Long `{low, high, unsigned}`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= _MAX_NUMBER_TEXT:
        try:
            return int(value)
        except ValueError:
            pass
        try:
            parsed = float(value)
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    if isinstance(value, Mapping):
        return _long(value)
    return None


def _long(value: Mapping[str, Any]) -> int | None:
    low, high = value.get("low"), value.get("high")
    if isinstance(low, bool) or isinstance(high, bool):
        return None
    if not isinstance(low, int) or not isinstance(high, int):
        return None
    # protobufjs keeps both halves as signed 32-bit ints whatever `unsigned` says.
    high = high % 2**32 if value.get("unsigned") is True else (high + 2**31) % 2**32 - 2**31
    return high * 2**32 + low % 2**32


def integer(value: Any) -> int | None:
    """A whole number for sizes and durations; None when absent or not a number."""
    parsed = number(value)
    return int(parsed) if parsed is not None else None


def timestamp(value: Any, what: str) -> datetime:
    """Seconds or milliseconds since the epoch, told apart by size, as an aware UTC time."""
    parsed = number(value)
    if parsed is None or parsed < 0:
        raise PayloadError(f"{what} is not a timestamp: {short(value)}")
    try:
        seconds = parsed / 1000 if parsed > _MILLIS_ABOVE else parsed
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as error:
        raise PayloadError(f"{what} is out of range: {short(value)}") from error


def optional_timestamp(value: Any, what: str) -> datetime | None:
    return None if value is None else timestamp(value, what)


def compact(**fields: Any) -> dict[str, Any]:
    """The fields that have a value: media details carry only what the payload gave."""
    return {key: value for key, value in fields.items() if value is not None}
