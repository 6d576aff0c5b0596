"""Storing what a webhook brought, in one transaction, before the webhook answers 200.

Customer messages become pending incoming rows (the unique provider id turns a redelivered
webhook into a no-op); a message typed by staff on the business phone is stored as theirs
and pauses the bot in that conversation; edits, deletions, reactions and delivery statuses
update or annotate stored rows and never ask for an answer. The caller commits, then asks
the queue to drain the conversations in `IngestReport.drains`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.bridge.directory import contact_for, open_conversation, owner_for
from zapvet.bridge.events import Delete, Edit, Event, Ignored, Inbound, Reaction, Status
from zapvet.logging import get_logger
from zapvet.models import AISettings, Conversation, Message, WhatsAppInstance

log = get_logger("zapvet.bridge.ingest")
_STATUS_RANK = {"pending": 0, "sent": 1, "delivered": 2, "read": 3}


@dataclass
class IngestReport:
    """What one webhook did; `drains` maps conversations to answer to their debounce (ms)."""

    stored: int = 0
    duplicates: int = 0
    ignored: int = 0
    updated: int = 0
    takeovers: int = 0
    drains: dict[int, int] = field(default_factory=dict)
    #: (organization, provider id, base64) of media bytes the webhook carried: the bridge
    #: leaves them in Redis for the worker (`media.stash`), never in PostgreSQL.
    inline_media: list[tuple[int, str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, int]:
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "updated": self.updated,
        }


async def _insert(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Insert a message unless its provider id is known; the new id, or None if a duplicate."""
    statement = (
        insert(Message)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["organization_id", "whatsapp_message_id"],
            index_where=text("whatsapp_message_id IS NOT NULL"),
        )
        .returning(col(Message.id))
    )
    row = (await session.exec(statement)).first()
    return None if row is None else int(row[0])


def _row(
    instance: WhatsAppInstance, conversation: Conversation, now: datetime, **values: Any
) -> dict[str, Any]:
    # Stamped with the caller's clock, which the drain's debounce and the sweeper also use.
    return {
        "created_at": now,
        "updated_at": now,
        "organization_id": instance.organization_id,
        "conversation_id": conversation.id,
        "instance_id": instance.id,
        "attempts": 0,
        "from_me": False,
        "sent_by_ai": False,
        **values,
    }


async def ingest(
    session: AsyncSession, instance: WhatsAppInstance, events: list[Event], now: datetime
) -> IngestReport:
    report = IngestReport()
    settings = await session.get(AISettings, instance.organization_id)
    debounce_ms = (settings.debounce_seconds if settings else 3) * 1000
    takeover = timedelta(minutes=settings.human_takeover_minutes if settings else 480)
    for event in events:
        if isinstance(event, Inbound):
            await _inbound(session, instance, event, now, report, debounce_ms, takeover)
        elif isinstance(event, Reaction):
            await _reaction(session, instance, event, now, report)
        elif isinstance(event, Edit | Delete):
            await _change(session, instance, event, now, report)
        elif isinstance(event, Status):
            await _status(session, instance, event, report)
        elif isinstance(event, Ignored):
            report.ignored += 1
    return report


async def _inbound(
    session: AsyncSession,
    instance: WhatsAppInstance,
    event: Inbound,
    now: datetime,
    report: IngestReport,
    debounce_ms: int,
    takeover: timedelta,
) -> None:
    org_id = instance.organization_id
    if event.from_me:
        ours = (
            await session.exec(
                select(Message.id).where(
                    Message.organization_id == org_id,
                    Message.whatsapp_message_id == event.provider_id,
                )
            )
        ).first()
        if ours is not None:
            report.duplicates += 1
            return
    contact = await contact_for(session, org_id, event.sender, now)
    if not event.from_me:
        await owner_for(session, org_id, event.sender)  # learns an owner's LID or BSUID
    conversation = await open_conversation(session, org_id, contact.id or 0, now)
    meta = {k: v for k, v in (("media", event.media), ("reply_to", event.reply_to)) if v}
    values = _row(
        instance,
        conversation,
        now,
        whatsapp_message_id=event.provider_id,
        chat_id=event.chat_id,
        content=event.text,
        message_type=event.kind,
        message_at=event.sent_at,
        meta=meta or None,
    )
    if event.from_me:
        values.update(
            direction="outgoing", from_me=True, status="sent", meta={**meta, "by": "staff"}
        )
    elif event.kind == "sticker":
        # A sticker is a gesture, not a request: stored for the history, never answered.
        values.update(direction="incoming", status="processed", processed_at=now)
    else:
        values.update(direction="incoming", status="pending")
    if await _insert(session, values) is None:
        report.duplicates += 1
        return
    report.stored += 1
    if event.inline_media and values["status"] == "pending":
        report.inline_media.append((org_id, event.provider_id, event.inline_media))
    log.info(
        "message stored",
        organizationId=org_id,
        conversationId=conversation.id,
        contactId=contact.id,
        kind=event.kind,
        staff=event.from_me,
        **{"from": event.sender.phone or event.sender.lid or event.sender.bsuid},
        messageContent=event.text,  # these two are dropped from logs unless captured
    )
    if event.from_me:
        # A person answered from the business phone: the bot steps back in this chat.
        conversation.bot_paused_until = now + takeover
        report.takeovers += 1
    elif values["status"] == "pending":
        report.drains[conversation.id or 0] = debounce_ms


async def _reaction(
    session: AsyncSession,
    instance: WhatsAppInstance,
    event: Reaction,
    now: datetime,
    report: IngestReport,
) -> None:
    contact = await contact_for(session, instance.organization_id, event.sender, now)
    conversation = await open_conversation(session, instance.organization_id, contact.id or 0, now)
    values = _row(
        instance,
        conversation,
        now,
        whatsapp_message_id=event.provider_id,
        chat_id=event.chat_id,
        direction="outgoing" if event.from_me else "incoming",
        from_me=event.from_me,
        content=event.emoji,
        message_type="reaction",
        status="processed",
        message_at=event.sent_at,
        meta={"target": event.target_id},
    )
    if await _insert(session, values) is None:
        report.duplicates += 1
    else:
        report.stored += 1


async def _change(
    session: AsyncSession,
    instance: WhatsAppInstance,
    event: Edit | Delete,
    now: datetime,
    report: IngestReport,
) -> None:
    target = (
        await session.exec(
            select(Message)
            .where(
                Message.organization_id == instance.organization_id,
                Message.whatsapp_message_id == event.target_id,
            )
            .with_for_update()
        )
    ).first()
    if target is None:
        report.ignored += 1
        return
    if isinstance(event, Edit):
        history = list((target.meta or {}).get("previous", []))
        target.meta = {**(target.meta or {}), "previous": [*history, target.content]}
        target.content, target.edited_at = event.text, now
    else:
        target.deleted_at = now
        if target.status == "pending":
            target.status = "ignored"  # deleted before it was answered: nothing to answer
    report.updated += 1


async def _status(
    session: AsyncSession, instance: WhatsAppInstance, event: Status, report: IngestReport
) -> None:
    rank = _STATUS_RANK.get(event.status)
    query = update(Message).where(
        col(Message.organization_id) == instance.organization_id,
        col(Message.whatsapp_message_id) == event.provider_id,
        col(Message.direction) == "outgoing",
    )
    if event.status == "failed":
        query = query.values(status="failed", error=event.error or "failed at the provider")
    elif rank is not None:
        lower = [name for name, value in _STATUS_RANK.items() if value < rank]
        query = query.where(col(Message.status).in_(lower)).values(status=event.status)
    else:
        query = query.where(col(Message.status).in_(["sent", "delivered"])).values(status="read")
    result = await session.exec(query)
    report.updated += int(result.rowcount)
