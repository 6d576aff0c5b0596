"""Sending the outbox: stored replies go out through the instance's provider.

A row is claimed (`pending` → `sending`) in a short transaction, or written already claimed
by the drain that sends it right after its commit, sent outside any transaction, and
settled in another: `sent` with the provider's id, back to `pending` for
a retry after a transient failure, or `failed` with the reason. Texts over 4,000
characters go out in parts; each part's id is recorded as soon as the gateway accepts it,
so a retry resumes after the last accepted part instead of repeating the reply.

A proactive message on a Cloud API number may carry its kind's template
(`proactive/templates.py`): outside the 24-hour window it goes out as the template; inside
it as text, and as the template once if Meta still answers 131047. A template Meta refuses
(132000–132016) is marked on the row (`meta.template_error`, counted by `zapvet stats`) and
the owners are told, once per template and day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.bridge.directory import open_conversation
from zapvet.bridge.senders import (
    OUTSIDE_WINDOW,
    TEMPLATE_ERRORS,
    CloudSender,
    RejectedSend,
    SendError,
    build_sender,
)
from zapvet.bridge.splitting import split_text
from zapvet.errors import ConfigError
from zapvet.logging import bind, get_logger
from zapvet.models import (
    AuroraOwnerNumber,
    AuroraProactiveMessage,
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    Organization,
    WhatsAppInstance,
    outgoing_message,
)
from zapvet.otel.tracing import tracer
from zapvet.proactive import connection
from zapvet.proactive.delivery import claim_by_id, finish, reason_not_to_send
from zapvet.proactive.planning import CONNECTION
from zapvet.proactive.templates import Template, alert_template_error, plan_send
from zapvet.queue.resources import Resources
from zapvet.webhooks.events import emit

log = get_logger("zapvet.queue.outbox")

#: A row left `sending` this long (its worker died mid-send) may be claimed again.
SENDING_LEASE = timedelta(minutes=2)


class Sent(Enum):
    SENT = "sent"
    ALREADY = "already sent or being sent"
    GONE = "no such message"
    FAILED = "failed permanently"


@dataclass(frozen=True)
class Claim:
    """What sending a claimed row needs."""

    content: str
    chat_id: str
    instance: WhatsAppInstance
    done: list[str]
    organization_id: int
    conversation_id: int
    #: A proactive message's template on a Cloud number, sent first outside the window.
    template: Template | None = None
    template_first: bool = False
    kind: str | None = None


async def _claim(
    res: Resources, session: AsyncSession, message_id: int, now: datetime, *, retry_failed: bool
) -> Claim | Sent:
    found = (
        await session.exec(
            select(Message, Organization.config_version)
            .join(Organization, col(Organization.id) == col(Message.organization_id))
            .where(Message.id == message_id)
            .with_for_update(skip_locked=True, of=Message)
        )
    ).first()
    if found is None or found[0].direction != "outgoing":
        return Sent.GONE
    message, version = found
    stuck = message.status == "sending" and message.updated_at < now - SENDING_LEASE
    again = retry_failed and message.status == "failed"
    if message.status != "pending" and not stuck and not again:
        return Sent.ALREADY
    config = await res.configs.get(session, message.organization_id, version)
    instance = config.instance(message.instance_id)
    chat_id = message.chat_id or await _address(session, message, instance)
    if instance is None or chat_id is None:
        message.status, message.error = "failed", "no WhatsApp instance or address to send to"
        return Sent.FAILED
    message.status, message.attempts, message.updated_at = "sending", message.attempts + 1, now
    meta = message.meta if isinstance(message.meta, dict) else {}
    return Claim(
        message.content,
        chat_id,
        instance,
        list(meta.get("provider_ids", [])),
        message.organization_id,
        message.conversation_id,
        template=Template.from_meta(meta.get("template")),
        template_first=bool(meta.get("template_first")),
        kind=meta.get("kind"),
    )


def claim_new(message: Message, instance: WhatsAppInstance | None) -> Claim | None:
    """Claim a reply as it is written: the transaction that stores it is the claim's, and
    the writer sends it after the commit (`send_claimed`). None if it cannot be claimed so
    (no instance or chat id yet): it stays `pending` for `send_outgoing`."""
    if instance is None or not message.chat_id:
        return None
    message.status, message.attempts = "sending", 1
    return Claim(
        message.content, message.chat_id, instance, [], message.organization_id,
        message.conversation_id,
    )  # fmt: skip


async def _address(
    session: AsyncSession, message: Message, instance: WhatsAppInstance | None
) -> str | None:
    """Where to send when the reply has no received chat id: the last one, else the phone."""
    last = (
        await session.exec(
            select(Message.chat_id)
            .where(
                Message.conversation_id == message.conversation_id,
                Message.direction == "incoming",
                col(Message.chat_id).is_not(None),
            )
            .order_by(col(Message.message_at).desc())
        )
    ).first()
    if last:
        return last
    conversation = await session.get(Conversation, message.conversation_id)
    contact = await session.get(Contact, conversation.contact_id) if conversation else None
    if contact is None:
        return None
    if contact.phone:
        return contact.phone
    bsuid = (
        await session.exec(
            select(ContactIdentity.value).where(
                ContactIdentity.contact_id == contact.id, ContactIdentity.kind == "bsuid"
            )
        )
    ).first()
    return bsuid if instance is not None and instance.provider == "cloud" else None


#: Record a send's outcome in one statement; what the rare follow-ups need comes back.
_SETTLE = text(
    """
    UPDATE messages
       SET meta = (CASE WHEN jsonb_typeof(meta) = 'object' THEN meta ELSE '{}'::jsonb END)
                  || jsonb_build_object('provider_ids', CAST(:ids AS jsonb))
                  || CASE WHEN CAST(:template_error AS integer) IS NULL THEN '{}'::jsonb
                     ELSE jsonb_build_object('template_error', CAST(:template_error AS integer))
                     END,
           whatsapp_message_id = COALESCE(whatsapp_message_id, :first),
           status = :status, error = :error, updated_at = :now
     WHERE id = :id
    RETURNING meta->>'proactive_id', organization_id,
              (SELECT config_version FROM organizations WHERE id = messages.organization_id)
    """
)


async def _settle(
    res: Resources,
    message_id: int,
    *,
    ids: list[str],
    error: str | None,
    status: str,
    template_error: int | None = None,
) -> None:
    async with res.sessions() as session, session.begin():
        connection = await session.connection()
        result = await connection.execute(
            _SETTLE,
            {
                "ids": json.dumps(ids),
                "first": ids[0] if ids else None,
                "status": status,
                "error": error,
                "now": res.clock(),
                "id": message_id,
                "template_error": template_error,
            },
        )
        row = result.first()
        if row is None or status not in ("sent", "failed"):
            return
        if row[0] is not None:
            proactive = await session.get(AuroraProactiveMessage, int(row[0]), with_for_update=True)
            if proactive is not None:
                failed = (error or "failed") if status == "failed" else None
                await finish(session, proactive, res.clock(), error=failed)
        if status != "sent":
            return
        # The configuration at the version just read: no statement when no endpoint listens.
        config = await res.configs.get(session, int(row[1]), int(row[2]))
        await emit(
            connection,
            "message.sent",
            organization_id=int(row[1]),
            about=message_id,
            now=res.clock(),
            config=config,
        )
        if len(ids) < 2:
            return
        message = await session.get(Message, message_id)
        assert message is not None
        for index, provider_id in enumerate(ids[1:], start=2):
            # Later parts get rows of their own so the gateway's echoes and statuses match.
            session.add(
                Message(
                    organization_id=message.organization_id,
                    conversation_id=message.conversation_id,
                    instance_id=message.instance_id,
                    whatsapp_message_id=provider_id,
                    chat_id=message.chat_id,
                    direction="outgoing",
                    content="",
                    from_me=True,
                    sent_by_ai=message.sent_by_ai,
                    status="sent",
                    message_at=message.message_at,
                    meta={"part_of": message_id, "part": index},
                )
            )


async def send_outgoing(
    res: Resources, message_id: int, *, last_attempt: bool, retry_failed: bool = False
) -> Sent:
    """Send one outbox row (also a `failed` one with `retry_failed`: a requeued dead letter).

    Raises:
        SendError: a transient failure; the row is back to `pending` (or `failed` on the
            last attempt) and the caller retries (or dead-letters).
        RejectedSend: the provider refused for good; the row is `failed`.
    """
    async with res.sessions() as session, session.begin():
        claim = await _claim(res, session, message_id, res.clock(), retry_failed=retry_failed)
    if isinstance(claim, Sent):
        return claim
    return await send_claimed(res, message_id, claim, last_attempt=last_attempt)


async def send_claimed(
    res: Resources, message_id: int, claim: Claim, *, last_attempt: bool
) -> Sent:
    """Send a row this process claimed; raises like `send_outgoing`."""
    bind(organizationId=claim.organization_id, conversationId=claim.conversation_id)
    with tracer().start_as_current_span(
        f"send {claim.instance.provider}",
        attributes={
            "zapvet.organization.id": claim.organization_id,
            "zapvet.conversation.id": claim.conversation_id,
            "zapvet.provider": claim.instance.provider,
            "zapvet.outbox.id": message_id,
            "zapvet.reply.length": len(claim.content),
        },
    ) as span:
        parts = await _deliver(res, message_id, claim, last_attempt=last_attempt)
        span.set_attribute("zapvet.send.parts", parts)
    log.info("Response sent successfully", responseLength=len(claim.content), parts=parts)
    return Sent.SENT


async def _deliver(res: Resources, message_id: int, claim: Claim, *, last_attempt: bool) -> int:
    """Send the claimed row's remaining parts; how many parts it has."""
    try:
        sender = build_sender(claim.instance, res.http)
    except ConfigError as missing:  # no API key or token configured: retrying cannot help
        await _settle(res, message_id, ids=list(claim.done), error=str(missing), status="failed")
        raise RejectedSend(None, str(missing)) from missing
    ids = list(claim.done)
    parts = split_text(claim.content)
    # Staged for a Cloud number; one since moved to Evolution has no window: text it is.
    cloud = sender if isinstance(sender, CloudSender) else None
    template = claim.template if cloud is not None else None
    try:
        if cloud is not None and template is not None and claim.template_first:
            if not ids:
                ids.append(await _send_template(cloud, claim.chat_id, template))
        else:
            for part in parts[len(ids) :]:
                try:
                    ids.append(await sender.send_text(claim.chat_id, part))
                except RejectedSend as refused:
                    if cloud is None or template is None or refused.code != OUTSIDE_WINDOW or ids:
                        raise
                    # The window closed after all (Meta's clock decides): once, as the template.
                    ids.append(await _send_template(cloud, claim.chat_id, template))
                    break
                if len(ids) < len(parts):  # recorded at once; the last part is recorded as sent
                    await _settle(res, message_id, ids=ids, error=None, status="sending")
    except SendError as failure:
        status = "failed" if last_attempt else "pending"
        await _settle(res, message_id, ids=ids, error=failure.detail, status=status)
        raise
    except RejectedSend as refused:
        template_error = refused.code if refused.code in TEMPLATE_ERRORS else None
        await _settle(
            res,
            message_id,
            ids=ids,
            error=refused.detail,
            status="failed",
            template_error=template_error,
        )
        if template_error is not None and template is not None:
            await _tell_owners(res, claim, template, refused.detail)
        raise
    await _settle(res, message_id, ids=ids, error=None, status="sent")
    return len(ids)


async def _send_template(sender: CloudSender, chat_id: str, template: Template) -> str:
    return await sender.send_template(
        chat_id, template.name, template.language, template.parameters
    )


async def _tell_owners(res: Resources, claim: Claim, template: Template, error: str) -> None:
    """Queue the owners' notice of a refused template (the scheduler sends it when due)."""
    async with res.sessions() as session, session.begin():
        await alert_template_error(
            session, claim.organization_id, claim.kind or "?", template.name, error, res.clock()
        )


async def stage_proactive(res: Resources, proactive_id: int) -> int | None:
    """Turn a due proactive message into an outbox row; the row's id, or None if skipped."""
    now = res.clock()
    async with res.sessions() as session, session.begin():
        proactive = await claim_by_id(session, proactive_id, now)
        if proactive is None:
            return None
        reason = await reason_not_to_send(session, proactive, now)
        if reason is not None:
            await finish(session, proactive, now, skipped=reason)
            return None
        contact_id, chat_id = await _recipient(session, proactive, now)
        if contact_id is None:
            await finish(session, proactive, now, error="no recipient")
            return None
        config = await res.configs.get(session, proactive.organization_id)
        instance = config.instance(None)
        if proactive.message_type == CONNECTION:  # not through the instance that went down
            way = await _connection_route(session, proactive)
            if way is None:
                await finish(session, proactive, now, skipped=connection.UNDELIVERABLE)
                return None
            instance, chat_id = config.instance(way.instance_id), way.chat_id
        provider = instance.provider if instance is not None else None
        plan = await plan_send(session, proactive, contact_id, provider, now)
        if plan.skip is not None:
            await finish(session, proactive, now, skipped=plan.skip)
            return None
        conversation = await open_conversation(session, proactive.organization_id, contact_id, now)
        message = outgoing_message(
            organization_id=proactive.organization_id,
            conversation_id=conversation.id or 0,
            instance_id=instance.id if instance is not None else None,
            chat_id=chat_id,
            content=proactive.content,
            now=now,
            sent_by_ai=True,
            meta={"proactive_id": proactive.id, "kind": proactive.message_type, **plan.meta()},
        )
        session.add(message)
        await session.flush()
        return message.id


async def _connection_route(
    session: AsyncSession, proactive: AuroraProactiveMessage
) -> connection.Route | None:
    owner_id = proactive.owner_number_id
    owner = await session.get(AuroraOwnerNumber, owner_id) if owner_id is not None else None
    if owner is None:
        return None
    return await connection.route(session, proactive.organization_id, owner.phone)


async def _recipient(
    session: AsyncSession, proactive: AuroraProactiveMessage, now: datetime
) -> tuple[int | None, str | None]:
    if proactive.owner_number_id is None:
        return proactive.contact_id, None
    owner = await session.get(AuroraOwnerNumber, proactive.owner_number_id)
    if owner is None:
        return None, None
    contact = (
        await session.exec(
            select(Contact)
            .join(ContactIdentity, col(ContactIdentity.contact_id) == col(Contact.id))
            .where(
                Contact.organization_id == proactive.organization_id,
                ContactIdentity.kind == "phone",
                ContactIdentity.value == owner.phone_key,
            )
        )
    ).first()
    if contact is None:
        contact = Contact(
            organization_id=proactive.organization_id, phone=owner.phone, name=owner.name
        )
        session.add(contact)
        await session.flush()
        session.add(
            ContactIdentity(
                organization_id=proactive.organization_id,
                contact_id=contact.id or 0,
                kind="phone",
                value=owner.phone_key,
            )
        )
        await emit(
            await session.connection(),
            "contact.created",
            organization_id=proactive.organization_id,
            about=contact.id or 0,
            now=now,
        )
    return contact.id, None
