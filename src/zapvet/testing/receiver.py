"""A webhook receiver on loopback, as a shop's other system would run one: it checks each
request's `X-Zapvet-Signature`, keeps what it accepted, and answers what a test scripts
(down with 503 for a while, 410 Gone, slow).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from zapvet.serving import BackgroundServer
from zapvet.webhooks.signing import HEADER, verify


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool
    status: int

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class WebhookReceiver:
    """`POST /hook` (any path under it): 2xx unless `answers` says otherwise, in order."""

    secret: str
    #: Statuses to answer next, one per request (then 204).
    answers: deque[int] = field(default_factory=deque)
    #: Seconds to wait before answering each request.
    delay_s: float = 0.0
    #: Failures answered with no body (as a proxy in front of a receiver often does).
    bare: bool = False
    received: list[Received] = field(default_factory=list)
    _server: BackgroundServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            signed = verify(self.secret, request.headers.get(HEADER, ""), body, now=time.time())
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            with self._lock:
                status = self.answers.popleft() if self.answers else 204
                if not signed:
                    status = 401
                self.received.append(
                    Received(request.url.path, dict(request.headers), body, signed, status)
                )
            if status == 204 or self.bare:
                return Response(status_code=status)
            return JSONResponse({"error": f"scripted {status}"}, status_code=status)

        return Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])

    def __enter__(self) -> WebhookReceiver:
        self._server = BackgroundServer(self.app(), name="webhook-receiver", lifespan="off")
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the receiver first"
        return f"{self._server.origin}/hook"

    def accepted(self) -> list[dict[str, Any]]:
        """The events answered 2xx, in the order they arrived."""
        with self._lock:
            return [r.event for r in self.received if 200 <= r.status < 300]

    def fail_next(self, *statuses: int) -> None:
        with self._lock:
            self.answers.extend(statuses)
