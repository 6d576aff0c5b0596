"""The owner's "sim" or "não" to the open proposal: run it with its audit row, or drop it."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.commands.executors import EXECUTORS, Job
from zapvet.commands.proposals import Owner, open_proposal
from zapvet.errors import ToolError
from zapvet.scheduling import booking


async def resolve(session: AsyncSession, owner: Owner, answer: str, now: datetime) -> str | None:
    """Act on the owner's "sim" or "não" to the open proposal; None when there is none.

    Returns the reply for the owner. The proposal's new status, the change and its audit
    row commit together; a change that fails (a slot taken meanwhile) leaves only the
    proposal marked failed, with the reason.
    """
    proposal = await open_proposal(session, owner, lock=True)
    if proposal is None:
        return None
    proposal.resolved_at = now
    if answer == "no":
        proposal.status = "cancelled"
        return f"Tudo bem, não fiz nada. Cancelado: {proposal.preview}"
    if proposal.expires_at < now:
        proposal.status = "expired"
        return (
            f"Essa confirmação expirou, então não fiz nada: {proposal.preview} "
            "Se ainda quiser, é só pedir de novo."
        )
    org = await booking.load_policy(session, owner.organization_id)
    try:
        async with session.begin_nested():
            job = Job(session, owner, org, proposal.payload, now)
            result = await EXECUTORS[proposal.action](job)
    except ToolError as refused:
        proposal.status, proposal.result = "failed", refused.message
        return f"Não consegui fazer: {refused.message}"
    proposal.status, proposal.result = "confirmed", result
    return result
