"""Which failures are worth retrying: the world may differ in a moment, or it never will.

A turn calls the model and runs tools with side effects; running it again costs money and
time, and a customer waits through every retry. So a turn is retried only for failures of
the plumbing (a dropped connection, a restarting server, a timeout). Everything else, an
unstorable value, a refused constraint, a validation error or a bug, fails the same way
every time, and the drain answers with the fallback at once and records why.
"""

from __future__ import annotations

import httpx
import redis.exceptions
from sqlalchemy import exc as sa_exc

from zapvet.errors import PermanentError, TransientError

_TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    sa_exc.OperationalError,  # the server went away, is restarting, or refused the connection
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # the connection pool had nothing free in time
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    httpx.TransportError,
    ConnectionError,
    TimeoutError,
)


def is_transient(error: BaseException) -> bool:
    """True when retrying `error`'s work may succeed; False for anything that would fail again."""
    if isinstance(error, PermanentError):
        return False
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, _TRANSIENT)
