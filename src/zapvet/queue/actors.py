"""The actors: thin, idempotent, JSON ids in, one pipeline call, retry policy on the decorator.

Transient failures retry after exactly 2 s, 4 s and 8 s (Dramatiq's own backoff is
jittered), then dead-letter; permanent ones dead-letter at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import dramatiq
from dramatiq.middleware import CurrentMessage

from zapvet.errors import PermanentError, RejectedSend
from zapvet.logging import get_logger
from zapvet.models import Conversation
from zapvet.proactive.webhooks import endpoint_gone
from zapvet.queue.broker import INBOUND, OUTBOUND, PROACTIVE, WEBHOOKS
from zapvet.queue.dlq import REQUEUED
from zapvet.queue.drain import drain_conversation
from zapvet.queue.fairness import Fairness, Shares
from zapvet.queue.outbox import send_outgoing, stage_proactive
from zapvet.queue.resources import Resources
from zapvet.webhooks.delivery import attempt as attempt_delivery

MAX_RETRIES = 3
#: Triggers older than this are dropped by AgeLimit: the sweeper re-enqueues what matters.
MAX_AGE_MS = 6 * 3_600_000
#: Message option of a send the drain's inline attempt saw refused for good (its reason).
REFUSED = "zapvet_refused"
#: Longer than any turn (30 s model timeout × retries × tool rounds), shorter than forever.
TIME_LIMIT_MS = 10 * 60_000

log = get_logger("zapvet.queue.actors")
GetResources = Callable[[], Awaitable[Resources]]


def _retries() -> int:
    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) if message else 0


def _requeued() -> bool:
    message = CurrentMessage.get_current_message()
    return bool(message and message.options.get(REQUEUED))


def _refusal() -> str | None:
    message = CurrentMessage.get_current_message()
    refused = message.options.get(REFUSED) if message else None
    return str(refused) if refused is not None else None


def _retry_later(error: Exception) -> dramatiq.Retry:
    retries = _retries()
    log.warning("job failed, will retry", error_type=type(error).__name__, retries=retries)
    return dramatiq.Retry(str(error), delay=2000 * 2**retries)


@dataclass
class Queue:
    """The pipeline's queue: actors bound to one broker, and the `Enqueue` methods on them."""

    broker: Any
    drain_actor: Any
    send_actor: Any
    proactive_actor: Any
    webhook_actor: Any
    fairness: Fairness

    def drain(
        self, conversation_id: int, *, delay_ms: int = 0, organization_id: int | None = None
    ) -> None:
        """Enqueue a drain, whether or not one is owed already (the sweeper, the drain's own
        follow-ups, a parked conversation woken up)."""
        self.fairness.owe(conversation_id, organization_id, delay_ms)
        self._enqueue(conversation_id, delay_ms, organization_id)

    def request_drain(
        self, conversation_id: int, *, organization_id: int, delay_ms: int = 0
    ) -> bool:
        """The bridge's: enqueue a drain unless one is queued or parked for the conversation
        already (it will read this message too); True if one was enqueued."""
        if not self.fairness.owe_once(conversation_id, organization_id, delay_ms):
            return False
        try:
            self._enqueue(conversation_id, delay_ms, organization_id)
        except Exception:
            self.fairness.forgive(conversation_id)  # not owed after all: the sweeper's
            raise
        return True

    def _enqueue(self, conversation_id: int, delay_ms: int, organization_id: int | None) -> None:
        args = (conversation_id,) if organization_id is None else (conversation_id, organization_id)
        self.drain_actor.send_with_options(args=args, delay=delay_ms or None)

    def send(self, message_id: int, *, retry: bool = False, refused: str | None = None) -> None:
        """Send the outbox row; `retry`: a first attempt failed already, so this is the first
        retry (2 s later), and the usual 4 s and 8 s ones follow. `refused`: the gateway
        refused it for good already; the job only fails with that reason, so that the send is
        dead-lettered (and counted) as if the job had tried, and `zapvet dlq requeue` sends it.
        """
        if refused is not None:
            self.send_actor.send_with_options(args=(message_id,), **{REFUSED: refused})
        elif retry:
            self.send_actor.send_with_options(args=(message_id,), delay=2000, retries=1)
        else:
            self.send_actor.send(message_id)

    def proactive(self, proactive_id: int) -> None:
        self.proactive_actor.send(proactive_id)

    def webhook(self, delivery_id: int) -> None:
        """Attempt a webhook delivery the scheduler (or the one before it in line) claimed."""
        self.webhook_actor.send(delivery_id)


def declare(broker: Any, get_resources: GetResources, shares: Shares | None = None) -> Queue:
    """Declare the three actors on `broker`; jobs get their resources from `get_resources`;
    an organization's drains hold at most `shares` while others wait (`queue.fairness`)."""
    queue: Queue
    fairness = Fairness(broker.client, broker.namespace, shares or Shares())
    organizations: dict[int, int] = {}  # conversation → organization, for jobs without it

    async def drain(conversation_id: int, organization_id: int | None = None) -> None:
        res = await get_resources()
        try:
            org = organization_id or await _organization_of(res, conversation_id, organizations)
            if org is None:  # no such conversation: nothing to share
                await drain_conversation(res, queue, conversation_id)
                return
            ticket = await fairness.admit(res.locks, conversation_id, org)
            if ticket is None:
                return  # parked: one of its organization's ending turns wakes it
            try:
                await drain_conversation(res, queue, conversation_id)
            finally:
                for woken in await fairness.release(res.locks, ticket):
                    queue.drain(woken, organization_id=org)
        except PermanentError:
            raise
        except Exception as error:  # database or queue trouble: the drain is safe to rerun
            raise _retry_later(error) from error

    async def send_message(message_id: int) -> None:
        refusal = _refusal()
        if refusal is not None and not _requeued():
            raise RejectedSend(None, refusal)
        res = await get_resources()
        last = _retries() >= MAX_RETRIES
        try:
            await send_outgoing(res, message_id, last_attempt=last, retry_failed=_requeued())
        except PermanentError:
            raise
        except Exception as error:
            raise _retry_later(error) from error

    async def send_proactive(proactive_id: int) -> None:
        res = await get_resources()
        message_id = await stage_proactive(res, proactive_id)
        if message_id is not None:
            queue.send(message_id)

    async def deliver_webhook(delivery_id: int) -> None:
        # Its own retries: a failed attempt is settled with its next time in the row, and
        # the scheduler claims it again then (24 hours of them, not three).
        res = await get_resources()
        done = await attempt_delivery(
            res.sessions, res.webhook_client(), delivery_id, clock=res.clock
        )
        if done.following is not None:
            queue.webhook(done.following)
        if done.result == "gone":
            assert done.organization_id is not None and done.endpoint_id is not None
            async with res.sessions() as session, session.begin():
                told = await endpoint_gone(
                    session, done.organization_id, done.endpoint_id, done.url or "", res.clock()
                )
            for proactive_id in told:
                queue.proactive(proactive_id)

    def actor(job: Callable[[int], Awaitable[None]], name: str, queue: str, **extra: int) -> Any:
        # dramatiq's overloads do not accept its own **options alongside typed arguments.
        decorate = cast(Any, dramatiq.actor)(
            broker=broker,
            actor_name=name,
            queue_name=queue,
            max_retries=MAX_RETRIES,
            throws=(PermanentError,),
            time_limit=TIME_LIMIT_MS,
            **extra,
        )
        return decorate(job)

    queue = Queue(
        broker=broker,
        drain_actor=actor(drain, "drain", INBOUND, max_age=MAX_AGE_MS),
        send_actor=actor(send_message, "send_message", OUTBOUND),
        proactive_actor=actor(send_proactive, "send_proactive", PROACTIVE),
        webhook_actor=actor(deliver_webhook, "deliver_webhook", WEBHOOKS),
        fairness=fairness,
    )
    return queue


async def _organization_of(
    res: Resources, conversation_id: int, known: dict[int, int]
) -> int | None:
    """The conversation's organization (a job enqueued without it: `zapvet dlq requeue`,
    or one queued by an older release); conversations never change organization."""
    if conversation_id not in known:
        async with res.sessions() as session:
            found = await session.get(Conversation, conversation_id)
        if found is None:
            return None
        if len(known) > 100_000:
            known.clear()
        known[conversation_id] = found.organization_id
    return known[conversation_id]


class ResourceHolder:
    """Builds a process's resources once, inside the worker's event loop, on first use."""

    def __init__(self, factory: Callable[[], Resources]) -> None:
        self._factory = factory
        self._resources: Resources | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def get(self) -> Resources:
        if self._resources is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._resources is None:
                    self._resources = self._factory()
                    self._loop = asyncio.get_running_loop()
        return self._resources

    def close(self) -> None:
        """Close from the worker's main thread (shutdown hook) on the resources' own loop."""
        if self._resources is None or self._loop is None or self._loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self._resources.close(), self._loop)
        future.result(timeout=30)
        self._resources = None
