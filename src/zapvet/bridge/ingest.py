"""Storing what a webhook brought, in one transaction, before the webhook answers 200.

Customer messages become pending incoming rows (the unique provider id turns a redelivered
webhook into a no-op); a blocked contact's message is stored as `ignored`, marked
`meta.blocked`, and asks for no drain; a message typed by staff on the business phone is
stored as theirs and pauses the bot in that conversation; edits, deletions, reactions and
delivery statuses update or annotate stored rows and never ask for an answer; a
connection event records the instance's state (`instance_connections`) and when it last
changed. The caller
commits, then asks the queue to drain the conversations in `IngestReport.drains`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import literal, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.bridge import statements
from zapvet.bridge.directory import identities
from zapvet.bridge.events import (
    Connection,
    Delete,
    Edit,
    Event,
    Ignored,
    Inbound,
    Reaction,
    Sender,
    Status,
)
from zapvet.bridge.identity import phone_key
from zapvet.bridge.instances import Admitted
from zapvet.logging import get_logger
from zapvet.models import Message, WhatsAppInstance
from zapvet.models.config import ConfigCache, current_version
from zapvet.webhooks.events import EventType, emit

log = get_logger("zapvet.bridge.ingest")
#: Meta's "re-engagement message" error: free text outside the contact's 24-hour window.
REENGAGEMENT = 131047
_META = Message.__table__.c.meta  # type: ignore[attr-defined]
_STATUS_RANK = {"pending": 0, "sent": 1, "delivered": 2, "read": 3}

#: `Instances.confirm` bound to the session and the webhook's credentials.
Confirm = Callable[[Admitted, int], Awaitable[Admitted]]


@dataclass
class IngestReport:
    """What one webhook did; `drains` maps conversations to answer to their debounce (ms)."""

    stored: int = 0
    duplicates: int = 0
    ignored: int = 0
    updated: int = 0
    takeovers: int = 0
    drains: dict[int, int] = field(default_factory=dict)
    #: The organization of the webhook's instance (its drains' share, `queue.fairness`).
    organization_id: int = 0
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


def _row(
    instance: WhatsAppInstance, conversation_id: int, now: datetime, **values: Any
) -> dict[str, Any]:
    # Stamped with the caller's clock, which the drain's debounce and the sweeper also use.
    return {
        "created_at": now,
        "updated_at": now,
        "organization_id": instance.organization_id,
        "conversation_id": conversation_id,
        "instance_id": instance.id,
        "attempts": 0,
        "from_me": False,
        "sent_by_ai": False,
        "processed_at": None,
        **values,
    }


async def _trusted(admitted: Admitted, version: int) -> Admitted:  # noqa: ARG001
    return admitted


class _Transaction:
    """One batch's place in the webhook's transaction: the configuration, confirmed by the
    version its first statement read."""

    def __init__(self, session: AsyncSession, admitted: Admitted, confirm: Confirm) -> None:
        self.session = session
        self.admitted = admitted
        self._confirm = confirm
        self._confirmed = False

    @property
    def instance(self) -> WhatsAppInstance:
        return self.admitted.instance

    @property
    def org_id(self) -> int:
        return self.admitted.instance.organization_id

    async def confirm(self, version: int | None = None) -> None:
        """Check the configuration at `version` (read now when not given), once.

        Raises:
            Refused: the instance no longer accepts this webhook (roll back).
        """
        if self._confirmed:
            return
        if version is None:
            version = await current_version(self.session, self.org_id)
        self.admitted = await self._confirm(self.admitted, version)
        self._confirmed = True

    async def contact_id(self, sender: Sender, now: datetime) -> tuple[int, bool]:
        """The contact behind `sender` and whether it is blocked (`directory.contact_for`,
        in one statement when the sender and all of their identities are known); a new
        contact's webhook event."""
        keys = identities(sender)
        if not keys:
            raise ValueError("a sender without phone, LID or BSUID")
        conn = await self.session.connection()
        found = await statements.contact_id_for(
            conn, self.org_id, keys, name=sender.name, phone=sender.phone, now=now
        )
        await self.confirm(found.version)
        if found.created:
            await self.emit("contact.created", found.contact_id, now)
        elif found.filled:  # e.g. the name WhatsApp shows, first seen on a later message
            await self.emit(
                "contact.updated", found.contact_id, now, {"changes": list(found.filled)}
            )
        return found.contact_id, found.blocked

    async def emit(
        self,
        event_type: EventType,
        about: int,
        now: datetime,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """`event_type`'s webhook event in this transaction; no statement when no endpoint of
        the (confirmed) configuration listens."""
        await emit(
            await self.session.connection(),
            event_type,
            organization_id=self.org_id,
            about=about,
            now=now,
            extra=extra,
            config=self.admitted.config,
        )

    async def learn_owner(self, sender: Sender) -> bool:
        """Whether `sender` is an owner number; records its LID or BSUID the first time it
        writes with one."""
        owner = self.admitted.config.owner_for(
            phone_keys={phone_key(sender.phone)} if sender.phone else set(),
            lids={sender.lid} if sender.lid else set(),
            bsuids={sender.bsuid} if sender.bsuid else set(),
        )
        if owner is None or owner.id is None:
            return False
        if (sender.lid and not owner.lid) or (sender.bsuid and not owner.bsuid):
            conn = await self.session.connection()
            await statements.learn_owner(conn, owner.id, sender.lid, sender.bsuid)
        return True


async def ingest(
    session: AsyncSession,
    target: Admitted | WhatsAppInstance,
    events: list[Event],
    now: datetime,
    confirm: Confirm | None = None,
) -> IngestReport:
    """Store `events` for an instance the bridge admitted from its cache (`confirm` checks
    the configuration version the transaction read before anything is used from it), or
    for an instance row the caller read in this transaction.

    Raises:
        Refused: the configuration changed and the instance refuses the webhook now.
    """
    if isinstance(target, WhatsAppInstance):
        config = await ConfigCache().get(session, target.organization_id)
        admitted, confirm = Admitted(config, target), _trusted
    else:
        admitted = target
    assert confirm is not None, "an admitted instance is confirmed by its transaction"
    report = IngestReport(organization_id=admitted.instance.organization_id)
    tx = _Transaction(session, admitted, confirm)
    for event in events:
        if isinstance(event, Inbound):
            await _inbound(tx, event, now, report)
        elif isinstance(event, Reaction):
            await _reaction(tx, event, now, report)
        elif isinstance(event, Edit | Delete):
            await tx.confirm()
            await _change(session, tx.instance, event, now, report)
        elif isinstance(event, Status):
            await tx.confirm()
            await _status(session, tx.instance, event, report)
        elif isinstance(event, Connection):
            await tx.confirm()
            await _connection(session, tx.instance, event, now, report)
        elif isinstance(event, Ignored):
            report.ignored += 1
    await tx.confirm()  # even a webhook that stores nothing is refused by a stale token
    return report


async def _inbound(tx: _Transaction, event: Inbound, now: datetime, report: IngestReport) -> None:
    org_id = tx.org_id
    if event.from_me:
        await tx.confirm()
        if await statements.known_message(await tx.session.connection(), org_id, event.provider_id):
            report.duplicates += 1
            return
    contact_id, blocked = await tx.contact_id(event.sender, now)
    owner = not event.from_me and await tx.learn_owner(event.sender)
    if owner:
        blocked = False  # an owner number is never silenced (`commands.blocking` refuses)
    conn = await tx.session.connection()
    conversation_id = await statements.open_conversation_id(conn, org_id, contact_id, now)
    meta = {k: v for k, v in (("media", event.media), ("reply_to", event.reply_to)) if v}
    values = _row(
        tx.instance,
        conversation_id,
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
    elif blocked:
        # Kept for the history and the export, never answered, never shown to the model
        # (`graphs.history` skips rows marked blocked): the drain only takes pending rows.
        values.update(direction="incoming", status="ignored", processed_at=now)
        values["meta"] = {**meta, "blocked": True}
    elif event.kind == "sticker":
        # A sticker is a gesture, not a request: stored for the history, never answered.
        values.update(direction="incoming", status="processed", processed_at=now)
    else:
        values.update(direction="incoming", status="pending")
    message_id = await statements.insert_message(conn, values)
    if message_id is None:
        report.duplicates += 1
        return
    report.stored += 1
    if event.from_me:
        await tx.emit("message.sent", message_id, now)  # typed by staff on the business phone
    elif not owner:  # an owner talking to Aurora is not a customer's message
        await tx.emit("message.received", message_id, now)
    if event.inline_media and values["status"] == "pending":
        report.inline_media.append((org_id, event.provider_id, event.inline_media))
    log.info(
        "message stored",
        organizationId=org_id,
        conversationId=conversation_id,
        contactId=contact_id,
        kind=event.kind,
        staff=event.from_me,
        blocked=blocked,
        **{"from": event.sender.phone or event.sender.lid or event.sender.bsuid},
        messageContent=event.text,  # these two are dropped from logs unless captured
    )
    ai = tx.admitted.config.ai
    if event.from_me:
        # A person answered from the business phone: the bot steps back in this chat.
        takeover = timedelta(minutes=ai.human_takeover_minutes if ai else 480)
        await statements.pause(conn, conversation_id, now + takeover)
        report.takeovers += 1
    elif values["status"] == "pending":
        report.drains[conversation_id] = tx.admitted.config.debounce_seconds * 1000


async def _reaction(tx: _Transaction, event: Reaction, now: datetime, report: IngestReport) -> None:
    contact_id, _ = await tx.contact_id(event.sender, now)  # stored as processed: never answered
    conn = await tx.session.connection()
    conversation_id = await statements.open_conversation_id(conn, tx.org_id, contact_id, now)
    values = _row(
        tx.instance,
        conversation_id,
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
    if await statements.insert_message(conn, values) is None:
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
    if event.status == "failed" and (event.error or "").startswith(f"{REENGAGEMENT} "):
        # Meta took the text, then found the 24-hour window closed: a proactive message that
        # has its template goes out again, once, as the template (the sweeper sends pending
        # outbox rows; `queue.outbox` sends `template_first` rows as their template).
        again = (
            await session.exec(
                query.where(
                    col(Message.status).in_(["sent", "delivered"]),
                    _META.has_key("template"),
                    ~_META.has_key("late_reengagement"),
                )
                .values(
                    status="pending",
                    error=None,
                    # Its text's parts were delivered nowhere: the template is all of it.
                    meta=_META.op("-")("provider_ids").op("||")(
                        literal({"template_first": True, "late_reengagement": True}, JSONB)
                    ),
                )
                .returning(col(Message.id))
            )
        ).all()
        if again:
            log.info("text refused outside the 24-hour window: resent as its template")
            report.updated += len(again)
            return
    if event.status == "failed":
        query = query.values(status="failed", error=event.error or "failed at the provider")
        failed = (await session.exec(query.returning(col(Message.conversation_id)))).all()
        for conversation_id in failed:
            # Accepted, then lost: nothing retries it, so say so where operators look.
            log.warning(
                "reply failed after the gateway accepted it",
                organizationId=instance.organization_id,
                conversationId=conversation_id,
                error=event.error,
            )
        report.updated += len(failed)
        return
    elif rank is not None:
        lower = [name for name, value in _STATUS_RANK.items() if value < rank]
        query = query.where(col(Message.status).in_(lower)).values(status=event.status)
    else:
        query = query.where(col(Message.status).in_(["sent", "delivered"])).values(status="read")
    result = await session.exec(query)
    report.updated += int(result.rowcount)


#: The state and its time; `changed_at` moves only when the state does, and `alerted_at`
#: stays (the scheduler compares the two to tell the owners once per outage).
_CONNECTION = text(
    """
    INSERT INTO instance_connections
           (instance_id, organization_id, state, reason, changed_at, seen_at)
    VALUES (:instance_id, :organization_id, :state, :reason, :now, :now)
    ON CONFLICT (instance_id) DO UPDATE
       SET state = EXCLUDED.state,
           reason = EXCLUDED.reason,
           seen_at = EXCLUDED.seen_at,
           changed_at = CASE WHEN instance_connections.state = EXCLUDED.state
                             THEN instance_connections.changed_at ELSE EXCLUDED.changed_at END
    RETURNING (xmax = 0 OR changed_at = seen_at) AS changed
    """
)


async def _connection(
    session: AsyncSession,
    instance: WhatsAppInstance,
    event: Connection,
    now: datetime,
    report: IngestReport,
) -> None:
    connection = await session.connection()
    changed = (
        await connection.execute(
            _CONNECTION,
            {
                "instance_id": instance.id,
                "organization_id": instance.organization_id,
                "state": event.state,
                "reason": event.reason,
                "now": now,
            },
        )
    ).scalar()
    report.updated += 1
    if not changed:
        return
    fields = {
        "organizationId": instance.organization_id,
        "instance": instance.instance,
        "state": event.state,
        "reason": event.reason,
    }
    if event.state in ("open", "connecting"):
        log.info(f"whatsapp instance {event.state}", **fields)
    else:
        log.warning("whatsapp instance not connected", **fields)
