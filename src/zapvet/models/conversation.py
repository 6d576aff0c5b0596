"""Conversations with a contact and the messages in them (the durable inbox and outbox)."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, Literal

from sqlalchemy import (
    CheckConstraint,
    Index,
    Select,
    String,
    Text,
    bindparam,
    case,
    func,
    literal,
    text,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel, col, or_, select
from sqlmodel.sql.expression import SelectOfScalar

from zapvet.cleaning import clean_text
from zapvet.models.base import (
    created_field,
    id_field,
    moment_field,
    org_field,
    org_fk,
    org_unique,
    ref_field,
    updated_field,
)

ConversationStatus = Literal["active", "escalated", "closed"]
Direction = Literal["incoming", "outgoing"]
#: What a message carries, as the parsers read it and the `messages` row stores it; a
#: "reaction" is only ever a stored row (the parsers report reactions as `Reaction` events).
MessageType = Literal[
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "contact",
    "reaction",
    "interactive",
    "other",
]
MessageStatus = Literal[
    "pending", "processed", "ignored", "sending", "sent", "failed", "delivered", "read"
]


class Conversation(SQLModel, table=True):
    """The thread with one contact; at most one is open (not closed) per contact."""

    __tablename__ = "conversations"
    __table_args__ = (
        org_unique("conversations"),
        org_fk("contact_id", "contacts"),
        CheckConstraint("status IN ('active', 'escalated', 'closed')", name="status"),
        Index(
            "uq_conversations_open_per_contact",
            "organization_id",
            "contact_id",
            unique=True,
            postgresql_where=text("status <> 'closed'"),
        ),
        #: Every conversation of a contact, closed ones too (the Cloud API's 24-hour window).
        Index("ix_conversations_contact", "organization_id", "contact_id"),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    contact_id: int = ref_field()
    status: ConversationStatus = Field(default="active", sa_type=String(16))
    escalation_reason: str | None = Field(default=None, sa_type=Text)
    escalated_at: datetime | None = moment_field()
    bot_paused_until: datetime | None = moment_field()
    last_message_at: datetime | None = moment_field()
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()


class Message(SQLModel, table=True):
    """One WhatsApp message, incoming or outgoing.

    Incoming rows are committed before the webhook answers 200 and stay `pending` until a
    drain answers them; outgoing rows are written in the same transaction as that answer
    and stay `pending` until the sender records the provider's id (`sent`) or gives up.
    """

    __tablename__ = "messages"
    __table_args__ = (
        org_unique("messages"),
        org_fk("conversation_id", "conversations"),
        org_fk("instance_id", "whatsapp_instances", ondelete=None),
        CheckConstraint("direction IN ('incoming', 'outgoing')", name="direction"),
        Index(
            "uq_messages_provider_id",
            "organization_id",
            "whatsapp_message_id",
            unique=True,
            postgresql_where=text("whatsapp_message_id IS NOT NULL"),
        ),
        Index("ix_messages_conversation_time", "conversation_id", "message_at"),
        #: A contact's latest incoming message: the Cloud API's 24-hour window.
        Index(
            "ix_messages_incoming_time",
            "conversation_id",
            "message_at",
            postgresql_where=text("direction = 'incoming'"),
        ),
        Index(
            "ix_messages_pending",
            "direction",
            "created_at",
            postgresql_where=text("status = 'pending'"),
        ),
        #: A contact's messages answered in the last minute and day (`[limits]`).
        Index(
            "ix_messages_answered",
            "conversation_id",
            "processed_at",
            postgresql_where=text("direction = 'incoming' AND status = 'processed'"),
        ),
    )

    id: int | None = id_field()
    organization_id: int = org_field()
    conversation_id: int = ref_field()
    instance_id: int | None = ref_field(nullable=True)
    whatsapp_message_id: str | None = Field(default=None, max_length=128)
    chat_id: str | None = Field(default=None, max_length=128)
    direction: Direction = Field(sa_type=String(8))
    content: str = Field(default="", sa_type=Text)
    message_type: MessageType = Field(default="text", sa_type=String(16))
    from_me: bool = Field(default=False)
    sent_by_ai: bool = Field(default=False)
    status: MessageStatus = Field(default="pending", sa_type=String(16))
    message_at: datetime = moment_field(nullable=False)
    processed_at: datetime | None = moment_field()
    edited_at: datetime | None = moment_field()
    deleted_at: datetime | None = moment_field()
    attempts: int = Field(default=0)
    error: str | None = Field(default=None, sa_type=Text)
    meta: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()


def blocked_marking(now: Any) -> dict[str, Any]:
    """What an UPDATE sets on a blocked contact's still-pending message: `ignored`, marked
    `meta.blocked` as the bridge stores what a blocked contact sends (the history leaves
    those out). An absent `meta` is stored as JSON null, not SQL NULL: start from an object."""
    meta = Message.__table__.c.meta  # type: ignore[attr-defined]
    marked = case((func.jsonb_typeof(meta) == "object", meta), else_=literal({}, JSONB)).op("||")(
        literal({"blocked": True}, JSONB)
    )
    return {"status": "ignored", "processed_at": now, "meta": marked}


def outgoing_message(
    *,
    organization_id: int,
    conversation_id: int,
    content: str,
    now: datetime,
    sent_by_ai: bool,
    instance_id: int | None = None,
    chat_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Message:
    """A pending outbox row: the one way a text to send is written, always cleaned first.

    The drain's replies, Aurora's messages to clients and proactive messages all come
    through here. Two other kinds of outgoing row are not sends and are written where they
    happen: a staff message typed on the business phone (stored by `bridge.ingest` as
    received, already `sent`) and the later parts of a split send (`queue.outbox`, `sent`
    with the provider's ids, pointing at the row they belong to).
    """
    return Message(
        organization_id=organization_id,
        conversation_id=conversation_id,
        instance_id=instance_id,
        chat_id=chat_id,
        direction="outgoing",
        content=clean_text(content),
        from_me=True,
        sent_by_ai=sent_by_ai,
        status="pending",
        message_at=now,
        created_at=now,
        updated_at=now,
        meta=meta,
    )


def pending_messages(organization_id: int, conversation_id: int) -> SelectOfScalar[Message]:
    """The conversation's incoming messages still waiting for an answer, oldest first: what
    one turn answers."""
    return (
        select(Message)
        .where(
            Message.organization_id == organization_id,
            Message.conversation_id == conversation_id,
            Message.direction == "incoming",
            Message.status == "pending",
        )
        .order_by(col(Message.message_at), col(Message.id))
    )


#: Messages a turn reads as its history.
HISTORY_LIMIT = 20


def recent_messages(
    organization_id: int, conversation_id: int, limit: int
) -> SelectOfScalar[Message]:
    """The conversation's `limit` newest messages that are not deleted, newest first."""
    return (
        select(Message)
        .where(
            Message.organization_id == organization_id,
            Message.conversation_id == conversation_id,
            col(Message.deleted_at).is_(None),
        )
        .order_by(col(Message.message_at).desc(), col(Message.id).desc())
        .limit(limit)
    )


@cache
def pending_and_recent() -> Select[Any]:
    """In one read, the conversation's pending incoming messages (`pending_messages`) and its
    `HISTORY_LIMIT` newest messages that are not deleted (what a turn's history is made of),
    newest first; parameters `organization_id` and `conversation_id`.

    Built once (SQLAlchemy memoizes a statement's cache key on the object, so a statement
    built per turn costs its construction and its key every time). Plain rows with every
    column of `messages` as attributes, not ORM objects: a turn only reads them, and
    building twenty SQLModel instances per turn cost more than the query.
    """
    organization_id: Any = bindparam("organization_id")
    conversation_id: Any = bindparam("conversation_id")
    newest = recent_messages(organization_id, conversation_id, HISTORY_LIMIT).with_only_columns(
        col(Message.id)
    )
    table = Message.__table__  # type: ignore[attr-defined]
    return (
        sa_select(table)
        .where(
            table.c.organization_id == organization_id,
            table.c.conversation_id == conversation_id,
            or_(
                (table.c.direction == "incoming") & (table.c.status == "pending"),
                table.c.id.in_(newest.scalar_subquery()),
            ),
        )
        .order_by(table.c.message_at.desc(), table.c.id.desc())
    )
