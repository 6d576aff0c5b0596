"""Which failures the drain retries (the plumbing) and which answer with the fallback at once."""

from __future__ import annotations

import httpx
import pydantic
import pytest
import redis.exceptions
from sqlalchemy import exc as sa_exc

from zapvet.errors import PermanentError, ToolError, TransientError
from zapvet.queue.failures import is_transient


def _validation_error() -> pydantic.ValidationError:
    try:
        pydantic.TypeAdapter(int).validate_python("x")
    except pydantic.ValidationError as error:
        return error
    raise AssertionError("unreachable")


TRANSIENT = [
    TransientError("gateway down"),
    sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")),
    sa_exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")),
    sa_exc.TimeoutError("QueuePool limit reached"),
    sa_exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
    redis.exceptions.ConnectionError("refused"),
    httpx.ConnectError("refused"),
    ConnectionResetError(),
    TimeoutError(),
]
PERMANENT = [
    sa_exc.DataError("INSERT", {}, Exception("invalid byte sequence for encoding UTF8: 0x00")),
    sa_exc.IntegrityError("INSERT", {}, Exception("violates check constraint")),
    UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
    _validation_error(),
    ValueError("bad"),
    TypeError("a bug"),
    KeyError("a bug"),
    PermanentError("no"),
    ToolError("Não encontrei."),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_failures_of_the_plumbing_are_retried(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_failures_that_would_repeat_are_not_retried(error: Exception) -> None:
    assert not is_transient(error)
