"""Draining a conversation: answer its pending messages, once, in order, as one turn.

The webhook stores each message and asks for a drain of its conversation. A drain holds the
conversation's lock, waits out the debounce window (a burst of messages gets one answer),
skips what it must not answer (a person took over, the conversation is escalated, a stale
backlog replayed after a gateway reconnect), runs the right agent, and then, in one
transaction, marks exactly those messages processed and writes the reply to the outbox.
That transaction commits only if every one of those messages was still pending, so two
drains can never both answer the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Protocol

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.bridge.directory import owner_number_for
from zapvet.errors import ZapvetError, describe
from zapvet.graphs.history import load_history
from zapvet.graphs.loop import FALLBACK_REPLY, HANDOFF_REPLY
from zapvet.graphs.turn import run_turn
from zapvet.logging import bind, get_logger
from zapvet.media.prepare import MEDIA_KINDS, MediaTurn, prepare_media
from zapvet.models import (
    AIInteraction,
    AISettings,
    Conversation,
    Message,
    outgoing_message,
    pending_messages,
)
from zapvet.models.ai import AIType
from zapvet.otel.tracing import tracer
from zapvet.proactive.escalation import escalate
from zapvet.queue.failures import is_transient
from zapvet.queue.resources import Resources
from zapvet.tools.context import AuroraContext, ClientContext

#: Messages older than this when first drained are not answered (backlog after a reconnect).
STALE_AFTER = timedelta(hours=6)
#: Turns a batch may start without finishing. Each start is counted on its rows, so neither
#: a worker dying mid-turn nor the sweeper's fresh queue messages reset the count, which
#: Dramatiq's per-message poison guard cannot see; past it, the fallback is sent instead.
MAX_TURN_STARTS = 3
GAVE_UP = "gave up: the turn was started {starts} times and never finished (poison message?)"
HANDOFF_REASON = "o assistente não conseguiu concluir o pedido do cliente"

log = get_logger("zapvet.queue.drain")


class Enqueue(Protocol):
    """The queue as the pipeline sees it (Dramatiq in production, a list in tests)."""

    def drain(self, conversation_id: int, *, delay_ms: int = 0) -> None: ...
    def send(self, message_id: int) -> None: ...
    def proactive(self, proactive_id: int) -> None: ...


class Outcome(Enum):
    ANSWERED = "answered"
    NOTHING = "nothing pending"
    BUSY = "another drain holds the conversation"
    DEFERRED = "waiting for the burst to end"
    PAUSED = "a person is handling the conversation"
    RACED = "the messages changed under the turn"
    GAVE_UP = "the turn failed or kept dying: the fallback reply was sent"


@dataclass(frozen=True)
class _Pending:
    ids: list[int]
    newest_arrival: datetime
    instance_id: int | None
    chat_id: str | None
    stale: list[int]
    texts: list[str]
    #: Turns already started on these rows that never finished (a crash, a failed commit).
    starts: int
    #: The batch holds files (voice notes, photos, documents, videos) to make usable first.
    has_media: bool = False


async def _pending(
    session: AsyncSession, conversation: Conversation, now: datetime
) -> _Pending | None:
    rows = list(
        await session.exec(pending_messages(conversation.organization_id, conversation.id or 0))
    )
    if not rows:
        return None
    stale = [r.id or 0 for r in rows if now - r.message_at > STALE_AFTER]
    return _Pending(
        ids=[r.id or 0 for r in rows],
        newest_arrival=max(r.created_at for r in rows),
        instance_id=rows[-1].instance_id,
        chat_id=rows[-1].chat_id,
        stale=stale,
        texts=[r.content or "" for r in rows],
        starts=max(r.attempts for r in rows),
        has_media=any(r.message_type in MEDIA_KINDS for r in rows),
    )


async def _close(session: AsyncSession, ids: list[int], now: datetime, status: str) -> int:
    """Mark still-pending `ids` as `status`; returns how many were still pending."""
    result = await session.exec(
        update(Message)
        .where(col(Message.id).in_(ids), col(Message.status) == "pending")
        .values(status=status, processed_at=now)
    )
    return int(result.rowcount)


async def drain_conversation(res: Resources, enqueue: Enqueue, conversation_id: int) -> Outcome:
    """Answer `conversation_id`'s pending messages; safe to call any number of times."""
    async with res.locks.hold(conversation_id) as got:
        if not got:
            return Outcome.BUSY
        outcome = Outcome.NOTHING
        while True:
            step = await _drain_once(res, enqueue, conversation_id)
            if step in (Outcome.NOTHING, Outcome.DEFERRED):
                break
            outcome = step
    if step is not Outcome.DEFERRED:
        await _recheck(res, enqueue, conversation_id)
    return step if step is Outcome.DEFERRED else outcome


async def _recheck(res: Resources, enqueue: Enqueue, conversation_id: int) -> None:
    # A message stored just before the lock was released had its own drain refused as BUSY.
    async with res.sessions() as session:
        left = (
            await session.exec(
                select(Message.id)
                .where(
                    Message.conversation_id == conversation_id,
                    Message.direction == "incoming",
                    Message.status == "pending",
                )
                .limit(1)
            )
        ).first()
    if left is not None:
        enqueue.drain(conversation_id)


async def _drain_once(res: Resources, enqueue: Enqueue, conversation_id: int) -> Outcome:
    now = res.clock()
    async with res.sessions() as session:
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None:
            return Outcome.NOTHING
        pending = await _pending(session, conversation, now)
        if pending is None:
            return Outcome.NOTHING
        settings = await session.get(AISettings, conversation.organization_id)
        debounce = timedelta(seconds=settings.debounce_seconds if settings else 3)
        wait = debounce - (now - pending.newest_arrival)
        if wait > timedelta(0):
            enqueue.drain(conversation_id, delay_ms=max(1, int(wait.total_seconds() * 1000)))
            return Outcome.DEFERRED
        owner_number_id = await owner_number_for(
            session, conversation.organization_id, conversation.contact_id
        )
    paused = conversation.status != "active" or (
        conversation.bot_paused_until is not None and conversation.bot_paused_until > now
    )
    if conversation.status == "escalated" and pending.starts > 0:
        # A turn on these rows escalated and then died before its reply was stored: the
        # staff alert went out with the escalation; the customer still needs to hear back.
        return await _commit(res, enqueue, conversation, pending, Turn(HANDOFF_REPLY))
    if paused or pending.stale:
        async with res.sessions() as session, session.begin():
            if pending.stale:
                await _close(session, pending.stale, now, "ignored")
            if paused:
                await _close(session, pending.ids, now, "processed")
        return Outcome.PAUSED if paused else Outcome.RACED
    media = MediaTurn()
    if pending.has_media:
        media = await prepare_media(
            res.sessions, res.media_client(), res.media, pending.ids, settings
        )
    if media.retry_in_ms is not None:  # a fetch or transcription failed for a passing reason
        enqueue.drain(conversation_id, delay_ms=media.retry_in_ms)
        return Outcome.DEFERRED
    agent_of_batch: AIType = "aurora" if owner_number_id is not None else "client"
    trouble = _media_trouble(conversation, agent_of_batch, media.trouble)
    if not media.usable:  # only media nobody could use: say so, without the agent
        return await _commit(
            res, enqueue, conversation, pending, Turn(media.notice, interaction=trouble)
        )
    with tracer().start_as_current_span("route") as span:
        graph, context, agent = _route(res, conversation, owner_number_id)
        span.set_attribute("zapvet.agent", agent)
        bind(
            organizationId=conversation.organization_id,
            conversationId=conversation_id,
            contactId=conversation.contact_id,
            type="OWNER" if agent == "aurora" else "CLIENT",
            agentType=f"{agent}-ai",
        )
        async with res.sessions() as session:
            history = await load_history(
                session,
                organization_id=conversation.organization_id,
                conversation_id=conversation_id,
                batch=set(pending.ids),
                images=media.images,
            )
        bind(messageContent="\n".join(pending.texts))  # dropped from logs unless captured
    async with res.gate.enter(alone=pending.starts > 0):  # a suspect runs alone
        starts = await _start_turn(res, pending.ids)
        if starts > MAX_TURN_STARTS:
            log.error("poison batch given up", batch=len(pending.ids), starts=starts)
            reason = GAVE_UP.format(starts=starts - 1)
            return await _give_up(res, enqueue, conversation, pending, agent, reason)
        log.info(f"[{agent.upper()}-AI] Processing message", batch=len(pending.ids))
        try:
            cost = {"audio_seconds": media.audio_seconds, "images": len(media.images)}
            result = await run_turn(graph, context, history, inputs=cost)
        except Exception as error:
            if is_transient(error):
                raise
            log.error("turn failed for good", error_type=type(error).__name__, exc_info=error)
            reason = f"the turn failed: {describe(error)}"
            return await _give_up(res, enqueue, conversation, pending, agent, reason)
        for alert_id in result.alerts:  # committed with the escalation, whatever happens next
            enqueue.proactive(alert_id)
        handoff = result.handoff and agent == "client"
        turn = Turn(result.reply, handoff=handoff, interaction=trouble)
        try:
            outcome = await _commit(res, enqueue, conversation, pending, turn)
        except Exception as error:
            if is_transient(error):
                raise
            log.error("reply could not be stored", error_type=type(error).__name__)
            reason = f"the reply could not be stored: {describe(error)}"
            return await _give_up(res, enqueue, conversation, pending, agent, reason)
    if outcome is Outcome.ANSWERED:
        log.info(
            f"[{agent.upper()}-AI] Response ready",
            responseLength=len(result.reply or ""),
            escalated=result.escalated,
        )
    return outcome


async def _give_up(
    res: Resources,
    enqueue: Enqueue,
    conversation: Conversation,
    pending: _Pending,
    agent: AIType,
    reason: str,
) -> Outcome:
    """Answer the batch with the fallback (the hand-off text if it was escalated), mark it
    failed and record `reason`: for failures that running the turn again cannot fix."""
    failure = AIInteraction(
        organization_id=conversation.organization_id,
        conversation_id=conversation.id,
        ai_type=agent,
        status="error",
        error_message=reason,
    )
    return await _commit(res, enqueue, conversation, pending, Turn(None, failure=failure))


async def _start_turn(res: Resources, ids: list[int]) -> int:
    """Count a turn start on the batch's rows, committed before the turn runs; the most
    starts any of them has now."""
    async with res.sessions() as session, session.begin():
        counts = await session.exec(
            update(Message)
            .where(col(Message.id).in_(ids), col(Message.status) == "pending")
            .values(attempts=col(Message.attempts) + 1)
            .returning(col(Message.attempts))
        )
        return max((int(row[0]) for row in counts), default=0)


def _route(
    res: Resources, conversation: Conversation, owner_number_id: int | None
) -> tuple[Any, ClientContext | AuroraContext, AIType]:
    """Aurora for a registered owner number, the client attendant for everyone else."""
    if owner_number_id is not None:
        context: ClientContext | AuroraContext = AuroraContext(
            organization_id=conversation.organization_id,
            owner_number_id=owner_number_id,
            contact_id=conversation.contact_id,
            conversation_id=conversation.id or 0,
        )
        return res.aurora_graph, context, "aurora"
    context = ClientContext(
        organization_id=conversation.organization_id,
        contact_id=conversation.contact_id,
        conversation_id=conversation.id or 0,
    )
    return res.client_graph, context, "client"


@dataclass(frozen=True)
class Turn:
    """What a turn leaves to commit: its reply (None: silent), and what else must happen."""

    reply: str | None
    #: The turn gave up and promised a person: escalate in the same transaction.
    handoff: bool = False
    #: A turn that failed: the batch gets the fallback and is marked failed.
    failure: AIInteraction | None = None
    #: Something else to record with the reply (media that could not be used).
    interaction: AIInteraction | None = None


def _media_trouble(
    conversation: Conversation, agent: AIType, trouble: str | None
) -> AIInteraction | None:
    """The error row that says why some of the batch's media could not be used."""
    if trouble is None:
        return None
    return AIInteraction(
        organization_id=conversation.organization_id,
        conversation_id=conversation.id,
        ai_type=agent,
        status="error",
        error_message=trouble,
    )


async def _commit(
    res: Resources, enqueue: Enqueue, conversation: Conversation, pending: _Pending, turn: Turn
) -> Outcome:
    now = res.clock()
    try:
        async with res.sessions() as session, session.begin():
            outgoing, alerts = await _write(session, conversation, pending, turn, now)
    except _Raced:
        log.warning("pending messages changed during the turn", conversation_id=conversation.id)
        return Outcome.RACED
    if outgoing is not None and outgoing.id is not None:
        enqueue.send(outgoing.id)
    for alert_id in alerts:
        enqueue.proactive(alert_id)
    return Outcome.ANSWERED if turn.failure is None else Outcome.GAVE_UP


class _Raced(ZapvetError):
    """The turn's messages were no longer all pending at commit time: roll back."""


async def _write(
    session: AsyncSession, conversation: Conversation, pending: _Pending, turn: Turn, now: datetime
) -> tuple[Message | None, list[int]]:
    closed_as = "processed" if turn.failure is None else "failed"
    if await _close(session, pending.ids, now, closed_as) != len(pending.ids):
        raise _Raced
    reply, alerts = turn.reply, []
    if turn.failure is not None or turn.handoff:
        current = await session.get(Conversation, conversation.id, with_for_update=True)
        if current is not None and turn.handoff:
            alerts = await escalate(session, current, HANDOFF_REASON, now)
        escalated = current is not None and current.status == "escalated"
        if turn.failure is not None:
            reply = HANDOFF_REPLY if escalated else FALLBACK_REPLY
            session.add(turn.failure)
    if turn.interaction is not None:
        session.add(turn.interaction)
    outgoing: Message | None = None
    if reply is not None:
        outgoing = outgoing_message(
            organization_id=conversation.organization_id,
            conversation_id=conversation.id or 0,
            instance_id=pending.instance_id,
            chat_id=pending.chat_id,
            content=reply,
            now=now,
            sent_by_ai=True,
        )
        if not outgoing.content:  # nothing visible was left: the customer still hears back
            outgoing.content = FALLBACK_REPLY
        session.add(outgoing)
    await session.flush()
    return outgoing, alerts
