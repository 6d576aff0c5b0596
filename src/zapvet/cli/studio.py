"""The two agent graphs for LangGraph Studio (`langgraph dev`, see `langgraph.json`).

`client()` and `aurora()` are graph factories the dev server calls on each run. They build
the same graphs the worker runs: the model from the settings (`OPENAI_API_KEY`,
`OPENAI_BASE_URL`, `ZAPVET_MODEL`), the tools on the configured database (`DATABASE_URL`,
or the embedded PostgreSQL under `ZAPVET_DATA_DIR`), no checkpointer (the server brings its
own), and the trusted context as plain ids that Studio's "context" panel fills in, e.g.
`{"organization_id": 1, "contact_id": 3, "conversation_id": 5}`. A run without a complete
context gets no answer, exactly as in the worker.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import select

from zapvet import db
from zapvet.bridge.directory import contact_for, open_conversation, owner_for
from zapvet.bridge.events import Sender
from zapvet.bridge.identity import normalise_phone
from zapvet.clock import system_clock
from zapvet.config import load_settings, normalise_database_url
from zapvet.embedded import running_services
from zapvet.errors import StudioContextError as StudioContextError
from zapvet.graphs.aurora.graph import build_graph as build_aurora_graph
from zapvet.graphs.client.graph import build_graph as build_client_graph
from zapvet.llm.openai import build_chat_model
from zapvet.models import Organization
from zapvet.tools.deps import ToolDeps

Graph = CompiledStateGraph[Any, Any, Any, Any]

_lock = threading.Lock()
_deps: ToolDeps | None = None


def _tool_deps() -> ToolDeps:
    """Sessions on the configured database, made once per server process.

    The engine holds no pool (`NullPool`): the dev server may run graphs on more than one
    event loop, and a pooled asyncio connection must not cross loops.
    """
    global _deps
    with _lock:
        if _deps is None:
            settings = load_settings()
            url = settings.database_url
            if url is None:  # the embedded server, kept up until the dev server exits
                stack = contextlib.ExitStack()
                only_postgres = settings.model_copy(update={"redis_url": "redis://unused"})
                url = stack.enter_context(running_services(only_postgres)).database_url
                atexit.register(stack.close)
            engine = create_async_engine(normalise_database_url(url), poolclass=NullPool)
            _deps = ToolDeps(sessions=db.async_session_maker(engine))
        return _deps


def client() -> Graph:
    """The client attendant, as the worker runs it."""
    return build_client_graph(build_chat_model(load_settings()), _tool_deps())


def aurora() -> Graph:
    """Aurora, the owner's assistant, as the worker runs it."""
    return build_aurora_graph(build_chat_model(load_settings()), _tool_deps())


async def studio_context(database_url: str, slug: str, phone: str) -> dict[str, int]:
    """The trusted context for a Studio run as `phone` writing to organization `slug`.

    Finds or creates the contact and its open conversation the way the bridge does, so the
    ids are those a real message from that phone would get. An active owner number gets
    Aurora's context (with `owner_number_id`), anyone else the client's.

    Raises:
        StudioContextError: no organization has that slug.
    """
    engine = db.build_async_engine(database_url, pool_size=1)
    try:
        async with db.async_session_maker(engine)() as session, session.begin():
            org = (
                await session.exec(select(Organization).where(Organization.slug == slug))
            ).first()
            if org is None or org.id is None:
                raise StudioContextError(f"no organization {slug!r}: apply its file first")
            sender = Sender(phone=normalise_phone(phone))
            now = system_clock()
            contact = await contact_for(session, org.id, sender, now)
            conversation = await open_conversation(session, org.id, contact.id or 0, now)
            owner = await owner_for(session, org.id, sender)
            context = {
                "organization_id": org.id,
                "contact_id": contact.id or 0,
                "conversation_id": conversation.id or 0,
            }
            if owner is not None:
                context["owner_number_id"] = owner.id or 0
            return context
    finally:
        await engine.dispose()
