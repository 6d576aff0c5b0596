"""Cleaning text that a model wrote before it is stored or sent.

A model's output is untrusted input. Mangled emoji arrive as lone UTF-16 surrogates (which
cannot be encoded at all), NUL characters are refused by PostgreSQL, invisible control and
bidirectional-override characters can disguise a message ("Trojan Source"), and a runaway
answer can be any length. Every text that leaves a model on its way to the database or a
gateway (replies, tool arguments such as pet names or a message for a client, Aurora's
previews, proactive texts) goes through `clean_text`, so that whatever the model says, the
commit succeeds and the customer sees only printable text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

#: The longest text kept, in characters: three WhatsApp-sized parts of 4,000 (see
#: `bridge/splitting.py`). Longer texts are cut at a word and end with `CUT_ENDING`.
MAX_TEXT_CHARS = 12_000
CUT_ENDING = "\n\n(…mensagem longa demais, cortada aqui.)"

_SURROGATES = re.compile("[\ud800-\udfff]")
# Bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), the byte-order
# mark and the interlinear annotation controls: invisible, and used to disguise text.
_INVISIBLE = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff\ufff9\ufffa\ufffb"
)
_LINE_BREAKS = re.compile("\r\n|[\r\u2028\u2029\x85\x0b\x0c]")
_KEPT_CONTROLS = frozenset("\n\t")


def clean_text(text: str, *, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` made safe to store and send: the same words, nothing a customer cannot see.

    Valid surrogate pairs become the character they encode; lone surrogates, NUL and every
    other control character except newlines and tabs are removed; line and paragraph
    separators become newlines; bidi overrides and isolates are removed; the result is in
    NFC, stripped, and at most `limit` characters (cut at a word, ending in `CUT_ENDING`).
    Cleaning a cleaned text changes nothing. An empty result means nothing was left to say.

    Raises:
        ValueError: `limit` is too small to hold `CUT_ENDING`.
    """
    if limit <= len(CUT_ENDING):
        raise ValueError(f"limit must exceed {len(CUT_ENDING)} characters, got {limit}")
    if _SURROGATES.search(text):
        # Joins high+low pairs (a split emoji) into one character, then drops the rest.
        joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        text = _SURROGATES.sub("", joined)
    text = _LINE_BREAKS.sub("\n", text)
    text = "".join(ch for ch in text if _visible(ch))
    text = unicodedata.normalize("NFC", text).strip()
    if len(text) <= limit:
        return text
    return _cut(text, limit - len(CUT_ENDING)) + CUT_ENDING


def clean_arguments(value: Any) -> Any:
    """`value` (a tool call's arguments) with every string in it cleaned, at any depth."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_arguments(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_arguments(item) for item in value]
    return value


def _visible(ch: str) -> bool:
    if ch in _KEPT_CONTROLS:
        return True
    if ch in _INVISIBLE:
        return False
    return unicodedata.category(ch) != "Cc"


def _cut(text: str, room: int) -> str:
    """The longest prefix of `text` within `room` characters that ends at a word."""
    head = text[:room]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space > room // 2:
        head = head[:space]
    # A prefix never splits a surrogate pair (there are none left); it may end between a
    # base and its combining marks, which only drops the marks: still NFC.
    return head.rstrip()
