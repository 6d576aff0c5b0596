"""Long replies cut into WhatsApp-sized parts at the most natural boundary available.

The Cloud API refuses a text body over 4,096 characters, so every bridge sends long replies
as several messages. A cut goes between paragraphs if it can, otherwise between lines, then
between sentences, then between words; a word is cut only when it alone exceeds the limit.
"""

from __future__ import annotations

import re

#: Parts stay a little under the Cloud API's 4,096 so a provider's own counting cannot tip them.
DEFAULT_LIMIT = 4000

# From the coarsest boundary to the finest; each pattern matches the whitespace a cut consumes.
_BOUNDARIES = (
    re.compile(r"\n\s*\n\s*"),  # a blank line: paragraphs
    re.compile(r"\n\s*"),  # a line break
    re.compile(r"(?<=[.!?…])[\"'”»)\]]*\s+"),  # the end of a sentence
    re.compile(r"\s+"),  # a space
)


def split_text(text: str, limit: int = DEFAULT_LIMIT) -> list[str]:
    """The parts to send for `text`, each stripped, non-empty and at most `limit` characters.

    Joining the parts keeps every non-whitespace character of `text` in order; only the
    whitespace at the cuts is lost. An empty or blank text gives no parts.

    Raises:
        ValueError: `limit` is not positive.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    stripped = text.strip()
    if not stripped:
        return []
    return _split(stripped, limit, 0)


def _split(text: str, limit: int, level: int) -> list[str]:
    """Parts of a stripped, non-empty `text`, cutting at `_BOUNDARIES[level]` or finer."""
    if len(text) <= limit:
        return [text]
    if level == len(_BOUNDARIES):
        return [text[start : start + limit] for start in range(0, len(text), limit)]
    parts: list[str] = []
    current = ""
    for segment in _segments(text, _BOUNDARIES[level]):
        if len((current + segment).strip()) <= limit:
            current += segment
            continue
        if current.strip():
            parts.append(current.strip())
        current = ""
        if len(segment.strip()) <= limit:
            current = segment
        else:
            parts.extend(_split(segment.strip(), limit, level + 1))
    if current.strip():
        parts.append(current.strip())
    return parts


def _segments(text: str, boundary: re.Pattern[str]) -> list[str]:
    """`text` cut after each match of `boundary`; the pieces concatenate back to `text`."""
    cuts = [match.end() for match in boundary.finditer(text)]
    starts = [0, *cuts]
    ends = [*cuts, len(text)]
    return [text[start:end] for start, end in zip(starts, ends, strict=True) if end > start]
