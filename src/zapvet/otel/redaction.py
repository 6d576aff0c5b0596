"""Personal data and secrets out of telemetry: the last filter before spans and logs leave.

By default no message text, phone number, contact name or secret reaches a span attribute,
a span event or a log line: content attributes are blanked, phone-like digit runs become
`<phone>`, and token-bearing query parameters become `REDACTED` (the Cloud API's
`hub.verify_token` arrives in a URL the HTTP instrumentation records). `capture_content`
(ZAPVET_CAPTURE_CONTENT=true) keeps content and phones, for development only; secrets are
redacted always.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

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
_PHONE = re.compile(r"(?<![\w.])\+?\d[\d\s().-]{8,}\d(?![\w])")
_SECRET_QUERY = re.compile(
    r"((?:hub\.verify_token|verify_token|access_token|token|apikey|api_key|key)=)[^&\s\"']+",
    re.IGNORECASE,
)
_SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "x-webhook-token", "access_token"})


def scrub_text(value: str, *, capture: bool) -> str:
    """`value` with secrets (always) and phone numbers (unless capturing) replaced."""
    cleaned = _SECRET_QUERY.sub(r"\1REDACTED", value)
    return cleaned if capture else _PHONE.sub("<phone>", cleaned)


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
