"""An ASGI app served by uvicorn on a loopback port, in a background thread (tests, demo)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import uvicorn

#: How long `start()` waits for uvicorn to listen (and run the app's startup) before failing.
STARTUP_TIMEOUT_S = 30.0


class _Server(uvicorn.Server):
    """uvicorn's server, whose main loop `wake()` ends at once rather than at its next 0.1 s
    tick: tests start and stop hundreds of servers."""

    _woken: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._woken = woken = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):  # as uvicorn's own loop, but woken early
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), 0.1)

    def wake(self) -> None:
        """Run the next tick now; call on the server's loop."""
        if self._woken is not None:
            self._woken.set()


class BackgroundServer:
    """Serve `app` on 127.0.0.1 (an ephemeral port unless given) until `stop()`.

    `on_stop` runs on the server's loop just before shutdown, so an app can end long waits
    (a stalled fake request) and let uvicorn close its connections at once.
    """

    def __init__(
        self,
        app: Any,
        *,
        port: int = 0,
        name: str = "background-server",
        lifespan: str = "auto",
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self._app = app
        self._port = port
        self._name = name
        self._lifespan = lifespan
        self._on_stop = on_stop
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError(f"{self._name} has no port before start()")
        return self._port

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen and return once connections are accepted.

        Raises:
            RuntimeError: already started, or the server did not come up in time.
        """
        if self._thread is not None:
            raise RuntimeError(f"{self._name} is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            lifespan=self._lifespan,  # type: ignore[arg-type]
            ws="none",
            access_log=False,
            log_config=None,
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        self._server = server = _Server(config)
        self._thread = threading.Thread(
            target=self._run, args=(server, sock), name=self._name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError(f"{self._name} did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop serving, close connections and join the thread (idempotent)."""
        if self._server is None or self._thread is None:
            return
        if self.loop is not None and self._on_stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                self.loop.call_soon_threadsafe(self._on_stop)
        self._server.should_exit = True
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._server.wake)
        self._thread.join()
        self._server = self._thread = self.loop = None

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

    def _run(self, server: _Server, sock: socket.socket) -> None:
        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(serve())
