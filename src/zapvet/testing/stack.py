"""The whole pipeline on loopback, in one process: bridge, queue, worker, database, gateway.

Everything is real (HTTP to the bridge, Dramatiq on Redis, PostgreSQL) except the world
outside: the WhatsApp gateway is `FakeEvolutionAPI` and the model is whatever is passed
(usually a `ScriptedChatModel`). Tests and `zapvet demo` drive it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import httpx
import redis.asyncio as aioredis
from langchain_core.language_models import BaseChatModel
from sqlmodel import Session

from zapvet import db
from zapvet.bridge.app import build_app
from zapvet.clock import Clock, system_clock
from zapvet.media.prepare import MediaSetup
from zapvet.org import apply_spec, parse_spec
from zapvet.queue.actors import Queue, ResourceHolder, declare
from zapvet.queue.broker import build_broker
from zapvet.queue.middleware import Lifecycle
from zapvet.queue.resources import build_resources
from zapvet.runtime import bridge_state_factory
from zapvet.serving import BackgroundServer
from zapvet.testing.gateways import FakeEvolutionAPI


class MovableClock:
    """The real time plus an offset tests can move forward (timeouts, sweeps)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


INSTANCE = "petfeliz"
WEBHOOK_TOKEN = "hook-secret"
API_KEY = "evo-secret"


@dataclass
class LocalStack:
    """Start with `start()` (or `with`), post webhooks with `post()`, wait with `wait()`."""

    database_url: str
    redis_url: str
    model: BaseChatModel
    org_text: str
    debounce_seconds: int | None = None
    threads: int = 8
    clock: Clock = system_clock
    worker: bool = True
    namespace: str = field(default_factory=lambda: f"zt{uuid.uuid4().hex[:10]}")
    #: Where voice notes are transcribed (the stash and namespace are the stack's own).
    media: MediaSetup = field(default_factory=MediaSetup)
    gateway: FakeEvolutionAPI = field(init=False)
    queue: Queue = field(init=False)
    organization_id: int = field(init=False)
    _worker: Any = field(init=False, default=None)
    _bridge: BackgroundServer | None = field(init=False, default=None)
    _holder: ResourceHolder | None = field(init=False, default=None)

    def start(self) -> LocalStack:
        self.gateway = FakeEvolutionAPI(api_key=API_KEY, instances=[INSTANCE])
        self.gateway.start()
        self._apply_org()
        broker = build_broker(self.redis_url, namespace=self.namespace)
        self._holder = holder = ResourceHolder(
            lambda: build_resources(
                self.database_url,
                lambda: self.model,
                pool_size=self.threads + 4,
                clock=self.clock,
                media=replace(
                    self.media,
                    redis=aioredis.Redis.from_url(self.redis_url),
                    namespace=self.namespace,
                ),
            )
        )
        broker.add_middleware(Lifecycle(holder.close))
        self.queue = declare(broker, holder.get)
        if self.worker:
            self.start_worker()
        state = bridge_state_factory(
            self.database_url,
            self.redis_url,
            namespace=self.namespace,
            queue=self.queue,
            clock=self.clock,
        )
        self._bridge = BackgroundServer(build_app(state), name="zapvet-bridge")
        self._bridge.start()
        return self

    def _apply_org(self) -> None:
        spec = parse_spec(self.org_text)
        whatsapp = [w.model_copy(update={"api_url": self.gateway.base_url}) for w in spec.whatsapp]
        ai = spec.ai
        if self.debounce_seconds is not None:
            ai = ai.model_copy(update={"debounce_seconds": self.debounce_seconds})
        spec = spec.model_copy(update={"whatsapp": whatsapp, "ai": ai})
        engine = db.build_engine(self.database_url, pool_size=1)
        try:
            with Session(engine) as session:
                self.organization_id = apply_spec(session, spec).organization_id
                session.commit()
        finally:
            engine.dispose()

    def stop(self) -> None:
        if self._bridge is not None:
            self._bridge.stop()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        self.gateway.stop()

    def start_worker(self) -> None:
        """Consume the queues with an in-process Dramatiq worker (no-op if one runs)."""
        if self._worker is None:
            self._worker = dramatiq.Worker(
                self.queue.broker, worker_threads=self.threads, worker_timeout=100
            )
            self._worker.start()

    def stop_worker(self) -> None:
        """Stop consuming (messages stay queued), e.g. to flush Redis under the pipeline."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def bridge_url(self) -> str:
        assert self._bridge is not None
        return self._bridge.origin

    def post(
        self, payload: Any, *, token: str | None = WEBHOOK_TOKEN, path: str | None = None
    ) -> httpx.Response:
        """POST an Evolution webhook to the bridge, as the gateway would."""
        headers = {"X-Webhook-Token": token} if token is not None else {}
        url = f"{self.bridge_url}{path or f'/webhooks/evolution/{INSTANCE}'}"
        body = payload if isinstance(payload, bytes) else None
        return httpx.post(
            url, json=None if body else payload, content=body, headers=headers, timeout=30
        )

    def say(self, phone: str, text: str, **options: Any) -> httpx.Response:
        """The customer at `phone` sends `text` (an Evolution `messages.upsert`)."""
        response = self.post(self.gateway.incoming(INSTANCE, phone, text, **options))
        response.raise_for_status()
        return response

    def wait(self, done: Callable[[], bool], *, timeout: float = 60.0, what: str = "") -> None:
        """Poll `done` until true. Raises TimeoutError naming `what` (a hang guard, not a
        performance check: the pipeline is asserted on outcomes only)."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting for {what or 'the pipeline'}")
            time.sleep(0.05)
