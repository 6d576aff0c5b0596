"""The `X-Zapvet-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>`.

Stripe's scheme: the timestamp is signed with the body, so a receiver that checks the
signature and refuses an old `t` also refuses a replayed request. `verify` is what a
receiver does (docs/webhooks.md has the same few lines for receivers in other languages).
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Zapvet-Signature"
#: How old a signed request a receiver should still accept.
TOLERANCE_S = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header's value for `body` sent at `timestamp` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, *, now: float, tolerance: int = TOLERANCE_S
) -> bool:
    """Whether `header` signs `body` with `secret` and is at most `tolerance` seconds old."""
    fields: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).rsplit("v1=", 1)[1]
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))
