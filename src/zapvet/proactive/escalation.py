"""Handing a conversation to a person, and the alert that tells the owners about it."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.cleaning import clean_text
from zapvet.models import (
    Contact,
    Conversation,
)
from zapvet.models.config import OrgConfig
from zapvet.proactive.planning import ALERT, active_owners, insert_rows
from zapvet.proactive.wording import alert_text, alert_values
from zapvet.webhooks.events import emit


async def escalate(
    session: AsyncSession,
    conversation: Conversation,
    reason: str,
    now: datetime,
    *,
    config: OrgConfig | None = None,
) -> list[int]:
    """Hand `conversation` (a row locked by the caller) to a person and queue the owners'
    alerts in the caller's transaction, so no failure can separate the two; the alerts' ids.

    Escalating an escalated conversation again keeps its time, so the alerts (and the
    webhook event) are not repeated. `config`, the organization's cached configuration when
    the caller has it, spares the event's statement when no endpoint listens.
    """
    first = conversation.status != "escalated" or conversation.escalated_at is None
    if first:
        conversation.escalated_at = now
    conversation.status = "escalated"
    conversation.escalation_reason = clean_text(reason, limit=1000) or "sem motivo informado"
    await session.flush()
    if first:
        await emit(
            await session.connection(),
            "conversation.escalated",
            organization_id=conversation.organization_id,
            about=conversation.id or 0,
            now=now,
            config=config,
        )
    return await alert_escalation(session, conversation.organization_id, conversation.id or 0, now)


async def alert_escalation(
    session: AsyncSession, org_id: int, conversation_id: int, now: datetime
) -> list[int]:
    """Queue an alert to every active owner number about an escalated conversation."""
    row = (
        await session.exec(
            select(Conversation, Contact)
            .join(Contact, col(Contact.id) == col(Conversation.contact_id))
            .where(Conversation.organization_id == org_id, Conversation.id == conversation_id)
        )
    ).first()
    if row is None:
        return []
    conversation, contact = row
    stamp = (conversation.escalated_at or now).isoformat()
    reason = conversation.escalation_reason
    content = alert_text(contact.name, contact.phone, reason)
    return await insert_rows(
        session,
        [
            {
                "organization_id": org_id,
                "owner_number_id": owner.id,
                "contact_id": contact.id,
                "message_type": ALERT,
                "content": content,
                "template_values": alert_values(contact.name, contact.phone, reason),
                "scheduled_for": now,
                "status": "pending",
                "dedupe_key": f"escalation:{conversation_id}:{stamp}:{owner.id}",
            }
            for owner in await active_owners(session, org_id)
        ],
    )
