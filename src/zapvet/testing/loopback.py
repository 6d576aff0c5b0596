"""What every fake server shares: a Starlette app on a loopback port, started and stopped
from synchronous code, whose scripted waits end early when it stops."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

from starlette.applications import Starlette

from zapvet.serving import BackgroundServer


class LoopbackFake:
    """A `BackgroundServer` (uvicorn on its own loop and thread) around `_app()`.

    Every wait is asynchronous and ends early on `stop()`, so a stalled request never holds
    up shutdown.
    """

    _name = "fake server"

    def __init__(self, *, port: int) -> None:
        self._port = port
        self._server: BackgroundServer | None = None
        self._stopping: asyncio.Event | None = None

    def start(self) -> None:
        """Listen on 127.0.0.1 and return once connections are accepted.

        Raises:
            RuntimeError: already started, or uvicorn did not come up in time.
        """
        if self._server is not None:
            raise RuntimeError(f"the {self._name} is already running")
        # Bound to the server's loop by its first wait; `on_stop` sets it on that loop.
        stopping = asyncio.Event()
        server = BackgroundServer(
            self._app(),
            port=self._port,
            name=self._name,
            lifespan="off",
            on_stop=stopping.set,
        )
        self._stopping = stopping
        try:
            server.start()
        except RuntimeError:
            self._stopping = None
            raise
        self._server, self._port = server, server.port

    def stop(self) -> None:
        """Answer pending requests at once, close every connection and join the thread."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        self._stopping = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _origin(self) -> str:
        if self._port == 0:
            raise RuntimeError(f"the {self._name} has no port before start()")
        return f"http://127.0.0.1:{self._port}"

    def _app(self) -> Starlette:
        raise NotImplementedError

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds`; False if the server began stopping meanwhile."""
        stopping = self._stopping
        if stopping is None:
            return True
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), seconds)
        return not stopping.is_set()
