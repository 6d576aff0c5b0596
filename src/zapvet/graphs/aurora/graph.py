"""The Aurora graph: the shared tool loop with Aurora's prepare node and tools.

`prepare` refuses anyone who is not an active owner number of the organization, and answers
a bare "sim" or "não" to an open proposal itself, so that no model output can confirm a
write on the owner's behalf.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from sqlmodel import func, select

from zapvet.commands.confirmation import resolve
from zapvet.commands.proposals import Owner, open_proposal, owner_number
from zapvet.graphs.aurora.prompts import AuroraSnapshot, render_context, render_static
from zapvet.graphs.loop import build_tool_loop, latest_text, turn_fields
from zapvet.graphs.replies import confirmation
from zapvet.graphs.state import AgentState
from zapvet.models import AISettings, Conversation
from zapvet.scheduling import booking
from zapvet.tools.aurora import make_aurora_tools
from zapvet.tools.context import AuroraContext
from zapvet.tools.deps import ToolDeps

NOT_AN_OWNER = "Este número não está autorizado a falar com a Aurora."


def build_graph(
    model: BaseChatModel, deps: ToolDeps, *, name: str = "aurora"
) -> CompiledStateGraph[AgentState, Any, Any, Any]:
    """Compile Aurora around `model`, with tools bound to `deps`."""

    async def prepare(state: AgentState, runtime: Runtime[AuroraContext]) -> dict[str, Any]:
        context = runtime.context
        if context is None or not context.complete:
            return {"silenced": True, "error": "missing trusted context"}
        now = deps.clock()
        owner = Owner(context.organization_id, context.owner_number_id)
        async with deps.sessions() as session, session.begin():
            number = await owner_number(session, owner)
            if number is None:
                return {"reply": NOT_AN_OWNER, "turn_start": len(state["messages"])}
            org = await booking.load_policy(session, owner.organization_id)
            fields = turn_fields(
                state, today=now.astimezone(org.zone).date(), model=None, temperature=0.1
            )
            text = latest_text(state)
            answer = confirmation(text) if text else None
            if answer:
                reply = await resolve(session, owner, answer, now)
                if reply is not None:
                    return {**fields, "reply": reply}
            settings = await session.get(AISettings, owner.organization_id)
            pending = await open_proposal(session, owner)
            waiting = (
                await session.exec(
                    select(func.count()).where(
                        Conversation.organization_id == owner.organization_id,
                        Conversation.status == "escalated",
                    )
                )
            ).one()
            snapshot = AuroraSnapshot(
                org=org,
                services=await booking.active_services(session, owner.organization_id),
                owner_name=number.name,
                pending_preview=pending.preview if pending else None,
                pending_expires_at=pending.expires_at if pending else None,
                escalated_waiting=waiting,
            )
        return {
            **fields,
            "model": settings.model if settings else None,
            "system_prompt": render_static(snapshot),
            "context_prompt": render_context(snapshot, now),
        }

    return build_tool_loop(
        model=model,
        tools=make_aurora_tools(deps),
        prepare=prepare,
        deps=deps,
        ai_type="aurora",
        context_schema=AuroraContext,
        name=name,
    )


__all__ = ["NOT_AN_OWNER", "build_graph"]
