"""The client attendant graph: the shared tool loop with the client's prepare node and tools.

`prepare` reads the turn's snapshot (organization, catalogue, the contact's pets and
appointments) and stays silent for escalated or closed conversations.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from zapvet.graphs.client.prompts import render_context, render_static
from zapvet.graphs.client.snapshot import load_snapshot
from zapvet.graphs.loop import (
    FALLBACK_REPLY,
    LAST_STEP_REPLY,
    RECURSION_LIMIT,
    build_tool_loop,
    latest_text,
    tool_error_text,
    turn_fields,
)
from zapvet.graphs.replies import ERASURE_ACK, erasure_request, subscription
from zapvet.graphs.state import AgentState
from zapvet.models import Contact
from zapvet.tools.client import make_client_tools
from zapvet.tools.context import ClientContext
from zapvet.tools.deps import ToolDeps
from zapvet.webhooks.events import emit

OPTED_OUT = (
    "Pronto! Você não vai mais receber lembretes nem mensagens automáticas nossas. "
    'Se quiser voltar a receber, é só mandar "voltar a receber". '
    "Continuamos aqui para o que precisar. 🙂"
)
OPTED_IN = "Combinado! Você voltará a receber nossos lembretes e avisos. 🙂"

__all__ = [
    "OPTED_IN",
    "OPTED_OUT",
    "FALLBACK_REPLY",
    "LAST_STEP_REPLY",
    "RECURSION_LIMIT",
    "build_graph",
    "tool_error_text",
]


def build_graph(
    model: BaseChatModel, deps: ToolDeps, *, name: str = "client"
) -> CompiledStateGraph[AgentState, Any, Any, Any]:
    """Compile the client attendant around `model`, with tools bound to `deps`."""

    async def prepare(state: AgentState, runtime: Runtime[ClientContext]) -> dict[str, Any]:
        context = runtime.context
        if context is None or not context.complete:
            return {"silenced": True, "error": "missing trusted context"}
        now = deps.clock()
        async with deps.sessions() as session:
            snapshot = await load_snapshot(
                session,
                organization_id=context.organization_id,
                contact_id=context.contact_id,
                conversation_id=context.conversation_id,
                now=now,
                configs=deps.configs,
            )
        fields = turn_fields(
            state,
            today=now.astimezone(snapshot.org.zone).date(),
            model=snapshot.model,
            temperature=snapshot.temperature,
        )
        text = latest_text(state)
        if text and erasure_request(text):
            # A legal request, honoured whoever handles the chat; the owner decides (the
            # drain stores a `forget_client` proposal for them with the reply), never the model.
            return {**fields, "reply": ERASURE_ACK, "erasure_requested": True}
        wish = subscription(text) if text else None
        if wish is not None:
            # Honoured even while a person handles the conversation: it is a legal request,
            # not a conversational turn.
            async with deps.sessions() as session, session.begin():
                contact = await session.get(Contact, context.contact_id)
                if contact is not None and contact.organization_id == context.organization_id:
                    was = contact.opted_out_at
                    contact.opted_out_at = now if wish == "opt_out" else None
                    if (was is None) != (contact.opted_out_at is None):
                        await session.flush()
                        await emit(
                            await session.connection(),
                            "contact.updated",
                            organization_id=context.organization_id,
                            about=context.contact_id,
                            now=now,
                            extra={"changes": ["opted_out_at"]},
                        )
            return {**fields, "reply": OPTED_OUT if wish == "opt_out" else OPTED_IN}
        return {
            **fields,
            "silenced": snapshot.conversation_status != "active",
            "system_prompt": render_static(snapshot),
            "context_prompt": render_context(snapshot, now),
        }

    return build_tool_loop(
        model=model,
        tools=make_client_tools(deps),
        prepare=prepare,
        deps=deps,
        ai_type="client",
        context_schema=ClientContext,
        name=name,
    )
