"""What a worker process needs, built once per process inside its event loop (arq style)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langgraph.graph.state import CompiledStateGraph
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet import db
from zapvet.clock import Clock, system_clock
from zapvet.graphs.aurora.graph import build_graph as build_aurora_graph
from zapvet.graphs.client.graph import build_graph as build_client_graph
from zapvet.media.prepare import MediaSetup
from zapvet.models.config import ConfigCache
from zapvet.queue.budget import Budgets
from zapvet.queue.gate import TurnGate
from zapvet.queue.locks import ConversationLocks
from zapvet.tools.deps import ToolDeps

ModelFactory = Callable[[], BaseChatModel]


@dataclass
class Resources:
    """Engines, graphs, locks and the HTTP client one process shares across its jobs."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    locks: ConversationLocks
    http: httpx.AsyncClient
    client_graph: CompiledStateGraph[Any, Any, Any, Any]
    aurora_graph: CompiledStateGraph[Any, Any, Any, Any]
    clock: Clock = system_clock
    gate: TurnGate = field(default_factory=TurnGate)
    enqueue: Any = field(default=None)  # set by the actors module: the queue's send functions
    #: How voice notes, photos and documents are fetched and transcribed before a turn.
    media: MediaSetup = field(default_factory=MediaSetup)
    media_http: httpx.AsyncClient | None = None  # built from `media` on first use
    #: Outgoing webhooks' client: no kept-alive connections, since each request goes to the
    #: address its URL resolved to and was checked (a pooled connection to that address
    #: could carry another host's TLS session).
    webhook_http: httpx.AsyncClient | None = None
    #: The drain sends its reply itself once committed (the send job is the fallback);
    #: False: it only enqueues the send job.
    send_inline: bool = True
    #: Organizations' configurations (shared with the graphs' tools through their deps).
    configs: ConfigCache = field(default_factory=ConfigCache)
    #: Organizations' AI spend this month, against `[limits] monthly_budget_brl`.
    budgets: Budgets = field(default_factory=Budgets)

    def media_client(self) -> httpx.AsyncClient:
        if self.media_http is None:
            self.media_http = self.media.client()
        return self.media_http

    def webhook_client(self) -> httpx.AsyncClient:
        if self.webhook_http is None:
            self.webhook_http = httpx.AsyncClient(
                limits=httpx.Limits(max_keepalive_connections=0), trust_env=False
            )
        return self.webhook_http

    async def close(self) -> None:
        await self.locks.close()
        await self.http.aclose()
        if self.webhook_http is not None:
            await self.webhook_http.aclose()
        if self.media_http is not None:
            await self.media_http.aclose()
        if self.media.redis is not None:
            await self.media.redis.aclose()
        await self.engine.dispose()


def build_resources(
    database_url: str,
    model_factory: ModelFactory,
    *,
    pool_size: int = 20,
    clock: Clock = system_clock,
    http: httpx.AsyncClient | None = None,
    media: MediaSetup | None = None,
) -> Resources:
    """Build a process's resources; call it inside the event loop that will use them."""
    engine = db.build_async_engine(database_url, pool_size=pool_size)
    sessions = db.async_session_maker(engine)
    configs = ConfigCache()
    media = media or MediaSetup()
    deps = ToolDeps(
        sessions=sessions,
        clock=clock,
        configs=configs,
        transcribe_model=media.transcribe_model,
    )
    model = model_factory()
    return Resources(
        engine=engine,
        sessions=sessions,
        locks=ConversationLocks(database_url),
        http=http or httpx.AsyncClient(timeout=httpx.Timeout(15.0)),
        client_graph=build_client_graph(model, deps),
        aurora_graph=build_aurora_graph(model, deps),
        clock=clock,
        media=media,
        configs=configs,
        budgets=Budgets(transcribe_model=media.transcribe_model),
    )
