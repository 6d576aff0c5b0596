"""Fair scheduling between organizations: one organization's flood cannot hold the workers.

Drains share one FIFO queue, so without this a shop whose customers (or a broadcast reply
storm) send thousands of messages would put its drains ahead of every other shop's, and
hold every worker thread and CPU cycle while they run. Three parts:

- **One drain owed per conversation.** The bridge asks for a drain only if none is queued or
  parked for the conversation already (`SET NX` on its *owed* key); a drain job clears the
  key as it starts, before it reads what is pending, so a message stored after that gets a
  drain of its own. A flood of 5,000 messages from 500 contacts is 500 queued drains, not
  5,000. The sweeper drains conversations with pending messages and no drain owed, so the
  key expires when the sweeper would have called the drain late anyway (`QUEUED_GRACE_MS`
  after its delay: a drain held by a killed worker, Dramatiq's delayed ones included, is
  swept as soon as before), or `PARKED_TTL_S` after a drain parked (its wake-up is another
  turn's end; a wake-up lost with a killed process costs that much at worst).
- **Contention.** Each request for a drain stamps its organization in a sorted set; an
  organization *contends* for `CONTENDING_S` after its last request, and while it has
  parked conversations. The bridge stamps it before the drain is queued, so the first
  message of a quiet shop is seen at once, not when its drain reaches the queue's head.
- **Shares.** While another organization contends, an organization may hold at most
  `Shares.per_process` turns in this worker process and `Shares.fleet` across all workers
  (PostgreSQL advisory locks, one per slot: a dead process frees its slots with its
  connection). A drain past its share *parks* its conversation in the organization's
  waiting set (oldest first) and returns at once, so the queue moves on to other shops'
  drains; each of the organization's turns that ends wakes the oldest parked one (two while
  nobody else contends, so its share grows back). Alone, an organization uses every thread.

Nothing here decides money or loses a message: Redis holds hints. If it loses them (a
restart), parked conversations still have their pending rows, and the sweeper drains them.
A conversation's messages are still answered by one drain at a time, in order (the
conversation lock), whichever job gets there.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

#: How long after its last request for a drain an organization counts as contending.
CONTENDING_S = 10.0
#: How long an owed mark outlives its queued drain's delay: the sweeper's own margin for a
#: drain to start (`scheduler.SWEEP_MARGIN`); a drain still queued past it may be enqueued
#: twice, as before marks existed (the second finds the lock taken or nothing pending).
QUEUED_GRACE_MS = 3_000
#: How long a parked conversation's mark lasts: past it the sweeper enqueues it again.
PARKED_TTL_S = 60
#: Largest fleet share: slot numbers live in 10 bits of the advisory lock key.
MAX_FLEET_SHARE = 1024

#: ZPOPMIN the oldest parked conversations; the organization stops counting as waiting once
#: none is left. KEYS: waiting set, contention set. ARGV: how many, the waiting member.
_WAKE = """
local woken = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[2]) end
return woken
"""


@dataclass(frozen=True)
class Shares:
    """What one organization may hold while others contend (`ZAPVET_ORG_TURNS_*`)."""

    per_process: int = 32
    fleet: int = 128

    def __post_init__(self) -> None:
        if self.per_process < 1 or not 1 <= self.fleet <= MAX_FLEET_SHARE:
            raise ValueError(f"shares out of range: {self}")


class Slots(Protocol):
    """Fleet-wide slots (`queue.locks.ConversationLocks` holds them as advisory locks)."""

    async def take_slot(self, organization_id: int, share: int, taken: set[int]) -> int | None: ...
    async def free_slot(self, organization_id: int, slot: int) -> None: ...


@dataclass
class Ticket:
    """One admitted drain: what its end must give back and whether it wakes anyone."""

    organization_id: int
    contended: bool
    #: The organization had parked conversations when the drain started.
    waiting: bool
    started: float
    slot: int | None = None


@dataclass
class Fairness:
    """Owed marks, contention and shares on one Redis client (the broker's, synchronous:
    each call is one round trip, like the enqueue it goes with)."""

    client: redis.Redis
    namespace: str
    shares: Shares = field(default_factory=Shares)
    clock: Any = time.time
    _running: Counter[int] = field(default_factory=Counter)
    _slots: dict[int, set[int]] = field(default_factory=dict)
    _parked_at: dict[int, float] = field(default_factory=dict)
    _wake: Any = None

    # Keys ------------------------------------------------------------------------------

    def _owed(self, conversation_id: int) -> str:
        return f"{self.namespace}:fair:owed:{conversation_id}"

    @property
    def _contention(self) -> str:
        return f"{self.namespace}:fair:contending"

    def _waiting(self, organization_id: int) -> str:
        return f"{self.namespace}:fair:waiting:{organization_id}"

    # Producers: the bridge, the sweeper, the drain's own re-enqueues ---------------------

    def owe(self, conversation_id: int, organization_id: int | None, delay_ms: int = 0) -> None:
        """Mark a drain owed (it is being enqueued whatever the mark said)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._owed(conversation_id), organization_id or 0, px=_ttl(delay_ms))
        if organization_id is not None:
            pipe.zadd(self._contention, {str(organization_id): self.clock()})
        pipe.execute()

    def owe_once(self, conversation_id: int, organization_id: int, delay_ms: int = 0) -> bool:
        """Mark a drain owed unless one is; True: the caller enqueues it."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._owed(conversation_id), organization_id, px=_ttl(delay_ms), nx=True)
        pipe.zadd(self._contention, {str(organization_id): self.clock()})
        marked, _ = pipe.execute()
        return bool(marked)

    def forgive(self, conversation_id: int) -> None:
        """Drop the mark of a drain that could not be enqueued (the sweeper's again)."""
        self.client.delete(self._owed(conversation_id))

    def owed(self, conversation_ids: Iterable[int]) -> set[int]:
        """Which of `conversation_ids` have a drain queued or parked."""
        ids = list(conversation_ids)
        if not ids:
            return set()
        marks = self.client.mget([self._owed(i) for i in ids])
        return {i for i, mark in zip(ids, marks, strict=True) if mark is not None}

    # The worker ------------------------------------------------------------------------

    async def admit(
        self, slots: Slots, conversation_id: int, organization_id: int
    ) -> Ticket | None:
        """Start a drain, clearing its owed mark, or park it (None) when its organization is
        past its share while another contends."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self._owed(conversation_id))
        pipe.zrangebyscore(self._contention, self.clock() - CONTENDING_S, "+inf")
        _, members = pipe.execute()
        me, flag = str(organization_id), _waiting_member(organization_id)
        names = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
        ticket = Ticket(
            organization_id,
            contended=any(name not in (me, flag) for name in names),
            waiting=flag in names,
            started=time.monotonic(),
        )
        self._running[organization_id] += 1  # before any await: a share is never overrun
        if ticket.contended:
            if self._running[organization_id] > self.shares.per_process:
                self._park(conversation_id, organization_id)
                return None
            taken = self._slots.setdefault(organization_id, set())
            try:
                ticket.slot = await slots.take_slot(organization_id, self.shares.fleet, taken)
            except BaseException:
                self._running[organization_id] -= 1
                raise
            if ticket.slot is None:
                self._park(conversation_id, organization_id)
                return None
            taken.add(ticket.slot)
        return ticket

    def _park(self, conversation_id: int, organization_id: int) -> None:
        self._running[organization_id] -= 1
        self._parked_at[organization_id] = time.monotonic()
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(self._waiting(organization_id), {str(conversation_id): self.clock()}, nx=True)
        pipe.zadd(self._contention, {_waiting_member(organization_id): float("inf")})
        pipe.set(self._owed(conversation_id), organization_id, ex=PARKED_TTL_S)
        pipe.execute()

    async def release(self, slots: Slots, ticket: Ticket) -> list[int]:
        """End an admitted drain; the parked conversations it wakes (the caller enqueues)."""
        org = ticket.organization_id
        self._running[org] -= 1
        if self._running[org] <= 0:
            del self._running[org]
        if ticket.slot is not None:
            self._slots.get(org, set()).discard(ticket.slot)
            await slots.free_slot(org, ticket.slot)
        parked_since = self._parked_at.get(org, float("-inf")) >= ticket.started
        if not (ticket.contended or ticket.waiting or parked_since):
            return []
        if self._wake is None:
            self._wake = self.client.register_script(_WAKE)
        count = 1 if ticket.contended else 2
        woken = self._wake(
            keys=[self._waiting(org), self._contention], args=[count, _waiting_member(org)]
        )
        return [int(member) for member in woken[::2]]  # [member, score, member, score…]

    def running(self, organization_id: int) -> int:
        return self._running[organization_id]


def _waiting_member(organization_id: int) -> str:
    """The contention set's member saying `organization_id` has parked conversations."""
    return f"w:{organization_id}"


def _ttl(delay_ms: int) -> int:
    return max(0, delay_ms) + QUEUED_GRACE_MS
