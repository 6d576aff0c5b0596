"""Media bytes that came inside a webhook, kept in Redis until the worker's turn needs them.

Evolution's "webhook base64" setting puts a message's bytes in the webhook itself. They are
never stored in PostgreSQL: the bridge leaves them here, for an hour, under the message's
organization and provider id, and the worker takes them before it would ask the gateway.
When they are gone (Redis restarted, the turn came later), the worker asks the gateway.
"""

from __future__ import annotations

from typing import Any

#: Long enough for a debounced turn and its retries, short enough not to hoard media.
STASH_SECONDS = 3600


def stash_key(namespace: str, organization_id: int, provider_id: str) -> str:
    return f"{namespace}:media:{organization_id}:{provider_id}"


async def put(
    redis: Any, namespace: str, organization_id: int, provider_id: str, base64: str
) -> None:
    """Keep `base64` (the webhook's text, as received) for the worker."""
    await redis.set(stash_key(namespace, organization_id, provider_id), base64, ex=STASH_SECONDS)


async def take(redis: Any, namespace: str, organization_id: int, provider_id: str) -> str | None:
    """The base64 the webhook carried, if it is still here."""
    value = await redis.get(stash_key(namespace, organization_id, provider_id))
    if value is None:
        return None
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


async def drop(redis: Any, namespace: str, organization_id: int, provider_id: str) -> None:
    """Forget the bytes once the message no longer needs them."""
    await redis.delete(stash_key(namespace, organization_id, provider_id))
