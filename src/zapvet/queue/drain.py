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

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Protocol

from sqlalchemy import bindparam, func, literal, text
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.orm import aliased
from sqlmodel import col, exists, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet import db
from zapvet.commands.privacy import request_erasure
from zapvet.errors import PermanentError, ZapvetError, describe
from zapvet.graphs.history import history_of, load_history
from zapvet.graphs.loop import FALLBACK_REPLY, HANDOFF_REPLY
from zapvet.graphs.turn import run_turn
from zapvet.logging import bind, get_logger
from zapvet.media.prepare import MEDIA_KINDS, MediaTurn, prepare_media
from zapvet.models import (
    AIInteraction,
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    Organization,
    WhatsAppInstance,
    blocked_marking,
    outgoing_message,
    pending_and_recent,
)
from zapvet.models.ai import AIType
from zapvet.models.config import OrgConfig
from zapvet.models.organization import LIMIT_DEFAULTS
from zapvet.otel.tracing import tracer
from zapvet.proactive.budget import REACHED, WARNING
from zapvet.proactive.escalation import escalate
from zapvet.queue import presence
from zapvet.queue.failures import is_transient
from zapvet.queue.outbox import Claim, claim_new, send_claimed, send_outgoing
from zapvet.queue.resources import Resources
from zapvet.tools.context import AuroraContext, ClientContext
from zapvet.webhooks.events import emit

#: Messages older than this when first drained are not answered (backlog after a reconnect).
STALE_AFTER = timedelta(hours=6)
#: Turns a batch may start without finishing. Each start is counted on its rows, so neither
#: a worker dying mid-turn nor the sweeper's fresh queue messages reset the count, which
#: Dramatiq's per-message poison guard cannot see; past it, the fallback is sent instead.
MAX_TURN_STARTS = 3
GAVE_UP = "gave up: the turn was started {starts} times and never finished (poison message?)"
HANDOFF_REASON = "o assistente não conseguiu concluir o pedido do cliente"
#: `[limits]`: what a contact past its per-minute limit hears, once per minute, and what one
#: past its daily limit hears as the conversation goes to a person.
MINUTE_LIMIT_NOTICE = (
    "Recebi várias mensagens suas em sequência. 🙂 Já já eu respondo todas, na ordem."
)
DAY_LIMIT_REPLY = (
    "Recebemos muitas mensagens suas hoje. Uma pessoa da nossa equipe vai continuar o "
    "atendimento por aqui assim que possível. 🙂"
)
DAY_LIMIT_REASON = "limite diário de mensagens do contato atingido (possível robô ou flood)"
LIMIT_NOTICE_KIND = "limit_notice"
BOT_LOOP_REASON = (
    "parece outro robô respondendo às nossas mensagens (respostas imediatas em sequência)"
)
#: `[limits] monthly_budget_brl`: what a customer hears once the month's AI budget is spent,
#: as the conversation goes to a person (`over_budget = "hand_to_human"`) or instead of the
#: model (`"fallback_only"`).
BUDGET_HANDOFF_REPLY = (
    "Obrigado pela mensagem! 🙂 Uma pessoa da nossa equipe vai continuar o seu atendimento "
    "por aqui assim que possível."
)
BUDGET_REASON = "orçamento mensal de IA atingido: o atendimento automático está pausado"
BUDGET_FALLBACK_REPLY = (
    "Obrigado pela mensagem! 🙂 No momento não consigo responder automaticamente, mas ela "
    "ficou registrada e a nossa equipe responde por aqui assim que possível."
)
#: A contact's message this soon after our reply was not typed by a person who read it.
BOT_PACE = timedelta(seconds=5)
#: How long a batch past a limit waits before the drain looks again (the contact's minute
#: window, the organization's turns per minute). The messages stay pending meanwhile.
CONTACT_RECHECK = timedelta(seconds=15)
ORG_RECHECK = timedelta(seconds=5)

log = get_logger("zapvet.queue.drain")


class Enqueue(Protocol):
    """The queue as the pipeline sees it (Dramatiq in production, a list in tests)."""

    def drain(
        self, conversation_id: int, *, delay_ms: int = 0, organization_id: int | None = None
    ) -> None: ...
    def send(self, message_id: int, *, retry: bool = False, refused: str | None = None) -> None: ...
    def proactive(self, proactive_id: int) -> None: ...
    def webhook(self, delivery_id: int) -> None: ...


class Outcome(Enum):
    ANSWERED = "answered"
    NOTHING = "nothing pending"
    BUSY = "another drain holds the conversation"
    DEFERRED = "waiting for the burst to end"
    PAUSED = "a person is handling the conversation"
    BLOCKED = "the contact is blocked: stored, never answered"
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
    #: The conversation's recent messages read with the batch (its history, for a text batch).
    recent: tuple[Any, ...] = ()
    #: The batch's provider message ids, oldest first (its read receipts).
    provider_ids: tuple[str | None, ...] = ()


def _pending(rows: list[Any], now: datetime) -> _Pending | None:
    """The batch among `pending_and_recent`'s rows (the incoming ones still pending)."""
    batch = sorted(
        (r for r in rows if r.direction == "incoming" and r.status == "pending"),
        key=lambda r: (r.message_at, r.id or 0),
    )
    if not batch:
        return None
    return _Pending(
        ids=[r.id or 0 for r in batch],
        newest_arrival=max(r.created_at for r in batch),
        instance_id=batch[-1].instance_id,
        chat_id=batch[-1].chat_id,
        stale=[r.id or 0 for r in batch if now - r.message_at > STALE_AFTER],
        texts=[r.content or "" for r in batch],
        starts=max(r.attempts for r in batch),
        has_media=any(r.message_type in MEDIA_KINDS for r in batch),
        recent=tuple(rows),
        provider_ids=tuple(r.whatsapp_message_id for r in batch),
    )


def _by_conversation() -> Any:
    return bindparam("conversation_id")


def _answered_since(window: timedelta) -> Any:
    """The contact's incoming messages answered (or handled) within `window` before `now`,
    across its conversations: what `[limits]` counts per contact."""
    mine = aliased(Conversation)
    answered = Message.__table__  # type: ignore[attr-defined]
    return (
        sa_select(func.count())
        .select_from(answered.join(mine, col(mine.id) == answered.c.conversation_id))
        .where(
            col(mine.organization_id) == col(Conversation.organization_id),
            col(mine.contact_id) == col(Conversation.contact_id),
            answered.c.direction == "incoming",
            answered.c.status == "processed",
            answered.c.processed_at > bindparam("now") - window,
        )
        .scalar_subquery()
    )


def _org_turns_since(window: timedelta) -> Any:
    """The organization's model turns within `window` before `now`."""
    return (
        sa_select(func.count())
        .where(
            col(AIInteraction.organization_id) == col(Conversation.organization_id),
            col(AIInteraction.created_at) > bindparam("now") - window,
        )
        .scalar_subquery()
    )


#: The conversation, its organization's configuration version, the contact's status and
#: identities ("kind:value") and the `[limits]` counts, in one read: what routing (owner or
#: customer), pausing and limiting need. The hot statements are built once, with parameters:
#: building them per turn cost more than a round trip.
_CONVERSATION = (
    sa_select(
        Conversation,
        col(Organization.config_version),
        col(Contact.status),
        select(func.array_agg(ContactIdentity.kind + literal(":") + ContactIdentity.value))
        .where(
            ContactIdentity.organization_id == Conversation.organization_id,
            ContactIdentity.contact_id == Conversation.contact_id,
        )
        .scalar_subquery(),
        _answered_since(timedelta(minutes=1)),
        _answered_since(timedelta(days=1)),
        _org_turns_since(timedelta(minutes=1)),
    )
    .join(Organization, col(Organization.id) == col(Conversation.organization_id))
    .join(Contact, col(Contact.id) == col(Conversation.contact_id))
    .where(Conversation.id == _by_conversation())
)
_MESSAGES = Message.__table__  # type: ignore[attr-defined]
#: The rows of `ids` that are still pending: what closing or starting a batch may touch.
_STILL_PENDING = (
    _MESSAGES.c.id.in_(bindparam("ids", expanding=True)),
    _MESSAGES.c.status == "pending",
)
#: Whether any incoming message of the conversation is still pending.
_MORE_PENDING = sa_select(
    exists().where(
        _MESSAGES.c.conversation_id == _by_conversation(),
        _MESSAGES.c.direction == "incoming",
        _MESSAGES.c.status == "pending",
    )
)
#: Whether the conversation got the per-minute notice since `since` (only a contact past its
#: limit asks: it may have sent more since than the history read with its batch holds).
_NOTICED = sa_select(
    exists().where(
        _MESSAGES.c.conversation_id == _by_conversation(),
        _MESSAGES.c.message_at > bindparam("since"),
        _MESSAGES.c.direction == "outgoing",
        _MESSAGES.c.meta["kind"].astext == LIMIT_NOTICE_KIND,
    )
)
#: Close the still-pending `ids` as `status`; its row count says how many were pending.
_CLOSE = (
    sa_update(_MESSAGES)
    .where(*_STILL_PENDING)
    .values(status=bindparam("status"), processed_at=bindparam("now"))
)
#: A takeover's pause that ran out, cleared: gone from the row, the bot has it back.
_TAKE_BACK = text(
    "UPDATE conversations SET bot_paused_until = NULL, updated_at = :now"
    " WHERE id = :id AND status = 'active' AND bot_paused_until <= :now RETURNING id"
)
#: Close the still-pending `ids` of a blocked contact (`models.blocked_marking`).
_IGNORE_BLOCKED = (
    sa_update(_MESSAGES).where(*_STILL_PENDING).values(**blocked_marking(bindparam("now")))
)
#: Count a turn start on the still-pending `ids`; their counts come back.
_START = (
    sa_update(_MESSAGES)
    .where(*_STILL_PENDING)
    .values(attempts=_MESSAGES.c.attempts + 1)
    .returning(_MESSAGES.c.attempts)
)


def _owner_number(config: OrgConfig, identities: list[str] | None) -> int | None:
    """The active owner number whose identities the contact shares, if any."""
    keys: dict[str, set[str]] = {"phone": set(), "lid": set(), "bsuid": set()}
    for item in identities or []:
        kind, _, value = item.partition(":")
        keys.setdefault(kind, set()).add(value)
    owner = config.owner_for(phone_keys=keys["phone"], lids=keys["lid"], bsuids=keys["bsuid"])
    return owner.id if owner is not None else None


async def _close(session: AsyncSession, ids: list[int], now: datetime, status: str) -> int:
    """Mark still-pending `ids` as `status`; returns how many were still pending."""
    connection = await session.connection()
    result = await connection.execute(_CLOSE, {"ids": ids, "status": status, "now": now})
    return int(result.rowcount)


#: Times one job takes the conversation again for messages that arrived while it held it;
#: past that, a fresh job carries on, so one busy conversation cannot hold a worker thread.
MAX_ROUNDS = 4


async def drain_conversation(res: Resources, enqueue: Enqueue, conversation_id: int) -> Outcome:
    """Answer `conversation_id`'s pending messages; safe to call any number of times."""
    outcome = Outcome.BUSY
    for _ in range(MAX_ROUNDS):
        async with res.locks.hold(conversation_id) as got:
            if not got:
                return outcome
            if outcome is Outcome.BUSY:
                outcome = Outcome.NOTHING
            while True:
                seen = _Seen()
                step = await _drain_once(res, enqueue, conversation_id, seen)
                if step is Outcome.DEFERRED:
                    return step  # the deferred drain job re-checks when the burst ends
                if step is Outcome.NOTHING:
                    break
                outcome = step
                if not seen.more:
                    break  # the commit saw nothing else pending: no second read
        # A message stored while the lock was held had its own drain refused as BUSY: it is
        # this job's to answer, now that the lock is free (taking it again, not enqueueing).
        if not await _left(res, conversation_id):
            return outcome
    enqueue.drain(conversation_id)
    return outcome


async def _left(res: Resources, conversation_id: int) -> bool:
    async with res.sessions() as session:
        return await _more_pending(session, conversation_id)


@dataclass
class _Seen:
    """What the last commit saw: whether other messages of the conversation were pending."""

    more: bool = True


@dataclass(frozen=True)
class _Batch:
    """One pass over a conversation's pending batch: what committing its answer, giving up
    on it and limiting it need."""

    res: Resources
    enqueue: Enqueue
    seen: _Seen
    config: OrgConfig
    conversation: Conversation
    pending: _Pending


async def _drain_once(
    res: Resources, enqueue: Enqueue, conversation_id: int, seen: _Seen
) -> Outcome:
    now = res.clock()
    async with res.sessions() as session:
        read = await db.rows(
            session, _CONVERSATION, {"conversation_id": conversation_id, "now": now}
        )
        if not read:
            return Outcome.NOTHING
        conversation, version, contact_status, identities, *counts = read[0]
        usage = _Usage(*counts)
        connection = await session.connection()  # Core rows: no ORM objects to build
        keys = {"organization_id": conversation.organization_id, "conversation_id": conversation_id}
        rows: list[Any] = list((await connection.execute(pending_and_recent(), keys)).all())
        pending = _pending(rows, now)
        if pending is None:
            return Outcome.NOTHING
        config = await res.configs.get(session, conversation.organization_id, version)
        settings = config.ai
        wait = timedelta(seconds=config.debounce_seconds) - (now - pending.newest_arrival)
        if wait > timedelta(0):
            delay_ms = max(1, int(wait.total_seconds() * 1000))
            enqueue.drain(
                conversation_id, delay_ms=delay_ms, organization_id=conversation.organization_id
            )
            return Outcome.DEFERRED
    owner_number_id = _owner_number(config, identities)
    batch = _Batch(res, enqueue, seen, config, conversation, pending)
    if contact_status == "blocked" and owner_number_id is None:
        # Blocked after these were stored (the bridge stores a blocked contact's messages as
        # ignored, with no drain): never answered, never shown to the model.
        async with res.sessions() as session, session.begin():
            connection = await session.connection()
            await connection.execute(_IGNORE_BLOCKED, {"ids": pending.ids, "now": now})
        return Outcome.BLOCKED
    paused = conversation.status != "active" or (
        conversation.bot_paused_until is not None and conversation.bot_paused_until > now
    )
    if conversation.status == "escalated" and pending.starts > 0:
        # A turn on these rows escalated and then died before its reply was stored: the
        # staff alert went out with the escalation; the customer still needs to hear back.
        return await _commit(batch, Turn(HANDOFF_REPLY))
    if paused or pending.stale:
        async with res.sessions() as session, session.begin():
            if pending.stale:
                await _close(session, pending.stale, now, "ignored")
            if paused:
                await _close(session, pending.ids, now, "processed")
        return Outcome.PAUSED if paused else Outcome.RACED
    # The owner's own numbers are never limited, nor held to the monthly budget: the owner
    # can still ask Aurora what the AI cost, and Aurora's turns are few.
    if owner_number_id is None:
        limited = await _limit(batch, usage, now)
        if isinstance(limited, Outcome):
            return limited
        pending = limited
        batch = replace(batch, pending=pending)
        # Before the media step: transcribing a voice note costs too.
        over = await _budget(batch, now)
        if over is not None:
            return over
    media = MediaTurn()
    if pending.has_media:
        media = await prepare_media(
            res.sessions, res.media_client(), res.media, pending.ids, settings
        )
    if media.retry_in_ms is not None:  # a fetch or transcription failed for a passing reason
        enqueue.drain(
            conversation_id,
            delay_ms=media.retry_in_ms,
            organization_id=conversation.organization_id,
        )
        return Outcome.DEFERRED
    agent_of_batch: AIType = "aurora" if owner_number_id is not None else "client"
    trouble = _media_trouble(conversation, agent_of_batch, media.trouble)
    if not media.usable:  # only media nobody could use: say so, without the agent
        notice = Turn(media.notice, records=_present(trouble))
        return await _commit(batch, notice)
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
        if pending.has_media:  # the media step wrote transcripts and texts: read them again
            async with res.sessions() as session:
                history = await load_history(
                    session,
                    organization_id=conversation.organization_id,
                    conversation_id=conversation_id,
                    batch=set(pending.ids),
                    images=media.images,
                )
        else:
            history = history_of(pending.recent, batch=set(pending.ids))
        bind(messageContent="\n".join(pending.texts))  # dropped from logs unless captured
    # A batch caught in one crash runs with the others (a killed worker's turns all come
    # back at once: serialising them made recovery one model call per turn); one that was
    # in flight in two crashes is a suspect and runs alone.
    async with res.gate.enter(alone=pending.starts > 1):
        starts = await _start_turn(res, pending.ids)
        if starts > MAX_TURN_STARTS:
            log.error("poison batch given up", batch=len(pending.ids), starts=starts)
            reason = GAVE_UP.format(starts=starts - 1)
            return await _give_up(batch, agent, reason)
        log.info(f"[{agent.upper()}-AI] Processing message", batch=len(pending.ids))
        instance = batch.config.instance(pending.instance_id)
        chat = presence.chat_of(instance, pending.chat_id, pending.provider_ids)
        try:
            inputs = {
                "audio_seconds": media.audio_seconds,
                "images": len(media.images),
                "record_by_caller": True,  # its usage row is stored with the reply, below
            }
            async with presence.typing(res.http, settings, chat):  # best effort, not awaited
                result = await run_turn(graph, context, history, inputs=inputs)
        except Exception as error:
            if is_transient(error):
                raise
            log.error("turn failed for good", error_type=type(error).__name__, exc_info=error)
            reason = f"the turn failed: {describe(error)}"
            return await _give_up(batch, agent, reason)
        for alert_id in result.alerts:  # committed with the escalation, whatever happens next
            enqueue.proactive(alert_id)
        handoff = result.handoff and agent == "client"
        spent = AIInteraction(**result.interaction) if result.interaction else None
        erasure = result.erasure_requested and agent == "client"
        records = _present(trouble, spent)
        turn = Turn(result.reply, handoff=handoff, records=records, erasure=erasure)
        try:
            outcome = await _commit(batch, turn)
        except Exception as error:
            if is_transient(error):
                raise
            log.error("reply could not be stored", error_type=type(error).__name__)
            reason = f"the reply could not be stored: {describe(error)}"
            return await _give_up(batch, agent, reason)
    if outcome in (Outcome.ANSWERED, Outcome.GAVE_UP):
        presence.mark_read(res.http, settings, chat)  # in the background, after the reply
    if outcome is Outcome.ANSWERED:
        log.info(
            f"[{agent.upper()}-AI] Response ready",
            responseLength=len(result.reply or ""),
            escalated=result.escalated,
        )
    return outcome


async def _give_up(batch: _Batch, agent: AIType, reason: str) -> Outcome:
    """Answer the batch with the fallback (the hand-off text if it was escalated), mark it
    failed and record `reason`: for failures that running the turn again cannot fix."""
    conversation = batch.conversation
    failure = AIInteraction(
        organization_id=conversation.organization_id,
        conversation_id=conversation.id,
        ai_type=agent,
        status="error",
        error_message=reason,
    )
    return await _commit(batch, Turn(None, failure=failure))


async def _start_turn(res: Resources, ids: list[int]) -> int:
    """Count a turn start on the batch's rows, committed before the turn runs; the most
    starts any of them has now."""
    async with res.sessions() as session, session.begin():
        connection = await session.connection()
        counts = await connection.execute(_START, {"ids": ids})
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
    #: Rows recorded with the reply: the turn's model usage, media that could not be used.
    records: tuple[AIInteraction, ...] = ()
    #: Why the conversation goes to a person, when `handoff`.
    reason: str = HANDOFF_REASON
    #: The customer asked to be forgotten: the owners get a `forget_client` proposal.
    erasure: bool = False


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


async def _commit(batch: _Batch, turn: Turn) -> Outcome:
    res, conversation, pending = batch.res, batch.conversation, batch.pending
    now = res.clock()
    try:
        async with res.sessions() as session, session.begin():
            # Sent from here right after the commit: written already claimed, so no second
            # transaction claims it (the send job and the sweeper still cover a crash).
            sender = batch.config.instance(pending.instance_id) if res.send_inline else None
            outgoing, claim, alerts = await _write(
                session, conversation, pending, turn, now, sender, batch.config
            )
            batch.seen.more = await _more_pending(session, conversation.id or 0)
    except _Raced:
        log.warning("pending messages changed during the turn", conversation_id=conversation.id)
        await _record(res, turn.records)
        return Outcome.RACED
    except Exception:
        await _record(res, turn.records)  # the model was called: its usage stays counted
        raise
    for alert_id in alerts:
        batch.enqueue.proactive(alert_id)
    if outgoing is not None and outgoing.id is not None:
        await _send(res, batch.enqueue, outgoing.id, claim)
    return Outcome.ANSWERED if turn.failure is None else Outcome.GAVE_UP


@dataclass(frozen=True)
class _Usage:
    """What `[limits]` counts, read with the conversation."""

    contact_minute: int
    contact_day: int
    org_minute: int


async def _limit(batch: _Batch, usage: _Usage, now: datetime) -> _Pending | Outcome:
    """The batch a customer's turn may answer under `[limits]`, or what happened instead.

    Past the contact's daily limit the conversation goes to a person (a flood, or another
    bot answering ours). Past its per-minute limit the contact hears one notice a minute
    and the batch waits, pending, for the window to reopen; under it, a turn answers at
    most what the window has room for, oldest first, and the rest waits. Past the
    organization's turns per minute the batch waits. Nothing is dropped: waiting messages
    stay pending and are answered in order.
    """
    ai, pending, conversation = batch.config.ai, batch.pending, batch.conversation
    limits = {
        name: getattr(ai, name) if ai is not None else default
        for name, default in LIMIT_DEFAULTS.items()
    }
    if usage.contact_day >= limits["contact_messages_per_day"]:
        log.warning("contact past its daily limit: handed to a person", answered=usage.contact_day)
        flood = Turn(DAY_LIMIT_REPLY, handoff=True, reason=DAY_LIMIT_REASON)
        return await _commit(batch, flood)
    loop = limits["bot_loop_exchanges"]
    if loop and _fast_exchanges(pending.recent) >= loop:
        log.warning("conversation looks like a loop with another bot: handed to a person")
        silent = Turn(None, handoff=True, reason=BOT_LOOP_REASON)  # no reply to feed the loop
        return await _commit(batch, silent)
    if usage.org_minute >= limits["org_turns_per_minute"]:
        log.warning("organization past its turns per minute: turn waits", turns=usage.org_minute)
        batch.enqueue.drain(conversation.id or 0, delay_ms=int(ORG_RECHECK.total_seconds() * 1000))
        return Outcome.DEFERRED
    room = min(
        limits["contact_messages_per_minute"] - usage.contact_minute,
        limits["contact_messages_per_day"] - usage.contact_day,
    )
    if room <= 0:
        if not await _noticed(batch, now):
            await _notice(batch, MINUTE_LIMIT_NOTICE, now)
        log.info("contact past its per-minute limit: batch waits", answered=usage.contact_minute)
        batch.enqueue.drain(
            conversation.id or 0, delay_ms=int(CONTACT_RECHECK.total_seconds() * 1000)
        )
        return Outcome.DEFERRED
    if len(pending.ids) <= room:
        return pending
    first = set(pending.ids[:room])
    rows = [
        r
        for r in pending.recent
        if not (r.direction == "incoming" and r.status == "pending") or r.id in first
    ]
    trimmed = _pending(rows, now)
    assert trimmed is not None  # `first` is not empty
    return replace(trimmed, recent=pending.recent)  # the rest stays pending for later turns


async def _budget(batch: _Batch, now: datetime) -> Outcome | None:
    """What a customer's turn gets instead of the model once the month's AI budget is spent
    (None: the model answers). From 80 % of it the owners are told, once per level.

    The spend is the process's cached figure (`queue/budget.py`), so an ordinary turn adds
    no statement; the budget is the configuration's, so raising it resumes at the next turn.
    Past it, `hand_to_human` escalates the conversation with a notice (a person answers the
    rest; later messages find it paused) and `fallback_only` answers with a fixed text. Both
    close the batch as processed: the messages stay stored, nothing is dropped.
    """
    res, config = batch.res, batch.config
    state = await res.budgets.state(res.sessions, config, now)
    if state is None or state.level < WARNING:
        return None
    await res.budgets.alert(res.sessions, batch.enqueue.proactive, config, state, now)
    if state.level < REACHED:
        return None
    log.warning(
        "organization past its monthly AI budget",
        spent_cents=state.spent_cents,
        budget_cents=state.budget_cents,
        behaviour=state.behaviour,
    )
    if state.behaviour == "fallback_only":
        return await _commit(batch, Turn(BUDGET_FALLBACK_REPLY))
    handoff = Turn(BUDGET_HANDOFF_REPLY, handoff=True, reason=BUDGET_REASON)
    return await _commit(batch, handoff)


def _fast_exchanges(rows: tuple[Any, ...]) -> int:
    """How many of the latest exchanges in a row the contact answered within `BOT_PACE` of
    our reply (an AI reply, then the contact's next message), newest first."""
    timeline = sorted(
        (
            r
            for r in rows
            if r.deleted_at is None
            and not (r.meta or {}).get("part_of")
            and (r.direction == "incoming" or r.sent_by_ai)
        ),
        key=lambda r: (r.created_at, r.id or 0),
    )
    count, index = 0, len(timeline) - 1
    while index > 0:
        answer, reply = timeline[index], timeline[index - 1]
        if answer.direction != "incoming":
            break
        if reply.direction == "incoming":
            index -= 1  # several messages in a row: the exchange starts at the first
            continue
        if answer.created_at - reply.created_at >= BOT_PACE:
            break
        count += 1
        index -= 2
    return count


async def _noticed(batch: _Batch, now: datetime) -> bool:
    """Whether the contact got the per-minute notice within the last minute."""
    params = {"conversation_id": batch.conversation.id, "since": now - timedelta(minutes=1)}
    async with batch.res.sessions() as session:
        connection = await session.connection()
        return bool(await connection.scalar(_NOTICED, params))


async def _notice(batch: _Batch, text: str, now: datetime) -> None:
    """Store and send a notice to the contact without answering (closing) the batch."""
    res, pending = batch.res, batch.pending
    async with res.sessions() as session, session.begin():
        kind = {"kind": LIMIT_NOTICE_KIND}
        notice = _to_batch(batch.conversation, pending, text, now, meta=kind)
        sender = batch.config.instance(pending.instance_id) if res.send_inline else None
        claim = claim_new(notice, sender) if sender is not None else None
        session.add(notice)
        await session.flush()
    if notice.id is not None:
        await _send(res, batch.enqueue, notice.id, claim)


def _to_batch(
    conversation: Conversation,
    pending: _Pending,
    text: str,
    now: datetime,
    meta: dict[str, Any] | None = None,
) -> Message:
    """The AI's outbox row to the chat the batch came from."""
    return outgoing_message(
        organization_id=conversation.organization_id,
        conversation_id=conversation.id or 0,
        instance_id=pending.instance_id,
        chat_id=pending.chat_id,
        content=text,
        now=now,
        sent_by_ai=True,
        meta=meta,
    )


def _present(*rows: AIInteraction | None) -> tuple[AIInteraction, ...]:
    return tuple(row for row in rows if row is not None)


async def _record(res: Resources, rows: tuple[AIInteraction, ...]) -> None:
    """Store a turn's usage rows on their own when its commit did not (best effort: the
    database may be what failed)."""
    if not rows:
        return
    try:
        async with res.sessions() as session, session.begin():
            session.add_all([AIInteraction.model_validate(row.model_dump()) for row in rows])
    except Exception as error:
        log.warning("turn usage not recorded", error_type=type(error).__name__)


async def _more_pending(session: AsyncSession, conversation_id: int) -> bool:
    connection = await session.connection()
    found = await connection.scalar(_MORE_PENDING, {"conversation_id": conversation_id})
    return bool(found)


async def _send(res: Resources, enqueue: Enqueue, message_id: int, claim: Claim | None) -> None:
    """Send the committed reply from this job; the send job takes over if that fails.

    The outbox row is the truth either way: it was written claimed by this job (or, without
    a chat id yet, is claimed here like the send job does), so the reply goes out once, and
    a worker dying here leaves the row to the sweeper.
    """
    if not res.send_inline:
        enqueue.send(message_id)
        return
    try:
        if claim is not None:
            await send_claimed(res, message_id, claim, last_attempt=False)
        else:
            await send_outgoing(res, message_id, last_attempt=False)
    except PermanentError as refused:  # the row is `failed` with the reason
        log.warning("reply refused by the gateway", error_type=type(refused).__name__)
        enqueue.send(message_id, refused=str(refused))  # dead-lettered like a refused job
    except Exception as error:  # the row is back to pending (or never claimed): retry as a job
        log.warning("inline send failed; the send job retries", error_type=type(error).__name__)
        enqueue.send(message_id, retry=True)  # this was the first attempt: the job is the second


class _Raced(ZapvetError):
    """The turn's messages were no longer all pending at commit time: roll back."""


async def _take_back(
    session: AsyncSession, conversation: Conversation, now: datetime, config: OrgConfig
) -> None:
    """The bot answers again after a staff takeover's pause ran out: the first turn to notice
    clears the pause (unless staff wrote again meanwhile) and says so to the webhooks. Only a
    conversation that had a pause costs the statement."""
    connection = await session.connection()
    taken = await connection.execute(_TAKE_BACK, {"id": conversation.id, "now": now})
    if taken.first() is not None:
        await emit(
            connection,
            "conversation.handed_back",
            organization_id=conversation.organization_id,
            about=conversation.id or 0,
            now=now,
            config=config,
        )


async def _write(
    session: AsyncSession,
    conversation: Conversation,
    pending: _Pending,
    turn: Turn,
    now: datetime,
    sender: WhatsAppInstance | None,
    config: OrgConfig,
) -> tuple[Message | None, Claim | None, list[int]]:
    """Close the batch and store its reply, claimed for `sender` when there is one."""
    closed_as = "processed" if turn.failure is None else "failed"
    if await _close(session, pending.ids, now, closed_as) != len(pending.ids):
        raise _Raced
    reply, alerts = turn.reply, []
    paused_until = conversation.bot_paused_until
    if paused_until is not None and paused_until <= now and not turn.handoff:
        await _take_back(session, conversation, now, config)
    if turn.failure is not None or turn.handoff:
        current = await session.get(Conversation, conversation.id, with_for_update=True)
        if current is not None and turn.handoff:
            alerts = await escalate(session, current, turn.reason, now, config=config)
        escalated = current is not None and current.status == "escalated"
        if turn.failure is not None:
            reply = HANDOFF_REPLY if escalated else FALLBACK_REPLY
            session.add(turn.failure)
    session.add_all(turn.records)
    if turn.erasure:
        alerts += await request_erasure(
            session, conversation.organization_id, conversation.contact_id, now
        )
    outgoing: Message | None = None
    claim: Claim | None = None
    if reply is not None:
        outgoing = _to_batch(conversation, pending, reply, now)
        if not outgoing.content:  # nothing visible was left: the customer still hears back
            outgoing.content = FALLBACK_REPLY
        if sender is not None:
            claim = claim_new(outgoing, sender)
        session.add(outgoing)
    await session.flush()
    return outgoing, claim, alerts
