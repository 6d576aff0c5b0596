"""Owner commands proposed by Aurora's tools: a proposal waits for the owner's "sim".

A proposal is an `aurora_pending_actions` row holding the action, its resolved ids and the
preview the owner saw; it expires after the organization's confirmation time, and a newer
proposal replaces an older one. Executing re-checks everything (a slot may have been taken
meanwhile), writes the change and an `audit_log` row with the row before and after, in the
same transaction as the proposal's new status.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.models import (
    AISettings,
    AuroraOwnerNumber,
    AuroraPendingAction,
)
from zapvet.scheduling import booking


@dataclass(frozen=True)
class Owner:
    """The confirmed identity behind an owner turn."""

    organization_id: int
    owner_number_id: int


async def owner_number(session: AsyncSession, owner: Owner) -> AuroraOwnerNumber | None:
    """The owner's number while it is active in that organization; None when it is not.

    Checked on every Aurora turn and every Aurora tool call: a number deactivated (or
    forged into another organization's context) mid-conversation loses access at once.
    """
    number = await session.get(AuroraOwnerNumber, owner.owner_number_id)
    if number is None or number.organization_id != owner.organization_id:
        return None
    return number if number.is_active else None


def for_owner(org: booking.OrgPolicy) -> booking.OrgPolicy:
    """The owner books for the shop: opening hours apply, the customers' lead time does not."""
    return replace(org, policy=replace(org.policy, min_lead_minutes=0))


async def propose(
    session: AsyncSession,
    owner: Owner,
    *,
    action: str,
    payload: dict[str, Any],
    preview: str,
    now: datetime,
) -> str:
    """Store a proposal (replacing any open one) and return what the owner must answer."""
    settings = await session.get(AISettings, owner.organization_id)
    ttl = settings.confirmation_ttl_minutes if settings else 10
    await session.exec(
        update(AuroraPendingAction)
        .where(
            col(AuroraPendingAction.organization_id) == owner.organization_id,
            col(AuroraPendingAction.owner_number_id) == owner.owner_number_id,
            col(AuroraPendingAction.status) == "pending",
        )
        .values(status="cancelled", resolved_at=now, result="replaced by a newer request")
    )
    session.add(
        AuroraPendingAction(
            organization_id=owner.organization_id,
            owner_number_id=owner.owner_number_id,
            action=action,
            payload=payload,
            preview=preview,
            expires_at=now + timedelta(minutes=ttl),
        )
    )
    return (
        f"PRÉVIA (nada foi feito ainda): {preview}\n"
        f"Peça ao dono para responder 'sim' para confirmar ou 'não' para cancelar; "
        f"a confirmação vale por {ttl} minutos."
    )


async def open_proposal(
    session: AsyncSession, owner: Owner, *, lock: bool = False
) -> AuroraPendingAction | None:
    query = (
        select(AuroraPendingAction)
        .where(
            AuroraPendingAction.organization_id == owner.organization_id,
            AuroraPendingAction.owner_number_id == owner.owner_number_id,
            AuroraPendingAction.status == "pending",
        )
        .order_by(col(AuroraPendingAction.created_at).desc(), col(AuroraPendingAction.id).desc())
    )
    if lock:
        query = query.with_for_update()
    return (await session.exec(query)).first()
