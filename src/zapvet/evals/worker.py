"""`via: drain` turns, played through the worker's drain on the world's frozen clock.

A turn's texts are stored as the webhook stores them (`bridge.ingest`, one webhook each),
and the drains they ask for run when due, as does every drain the drain queues in turn
(the debounce, a `[limits]` recheck): the clock jumps to each one. Drains due before the
next turn's messages arrive belong to this turn; after the last turn, every one left runs.
A turn is then read off the database: what the customer received, and which of the
customer's messages the worker closed, grouped by the moment it closed them.

The drain itself is handed in (`Worker`): evals sit beside the queue and never import it;
`zapvet.testing.worker` hands in `queue.drain`.
"""

from __future__ import annotations

import bisect
import re
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from sqlmodel import col, select

from zapvet.bridge.events import Inbound, Sender
from zapvet.bridge.ingest import ingest
from zapvet.clock import Clock
from zapvet.evals.outcome import TurnRecord
from zapvet.evals.scenario import Person, ScenarioError, Turn
from zapvet.models import Conversation, Message, WhatsAppInstance

#: Drain one conversation once; the drains it queued, as (conversation id, delay in ms).
Drain = Callable[[int], Awaitable[list[tuple[int, int]]]]
#: Drains one turn may run: a drain that keeps queueing itself is a scenario's failure.
MAX_DRAINS = 200


class Worker(Protocol):
    """Builds the worker's drain around a scenario's model and clock, for one run."""

    def __call__(
        self, database_url: str, model: BaseChatModel, clock: Clock
    ) -> AbstractAsyncContextManager[Drain]: ...


class Schedule:
    """The drains queued and not yet run, each due at a moment of the world's clock."""

    def __init__(self) -> None:
        self._due: list[tuple[datetime, int]] = []

    def add(self, at: datetime, conversation_id: int) -> None:
        """Queue a drain; one already due at that moment for that conversation covers it."""
        if (at, conversation_id) not in self._due:
            bisect.insort(self._due, (at, conversation_id))

    def take(self, horizon: datetime | None) -> tuple[datetime, int] | None:
        """The earliest drain due before `horizon` (any, with None), taken off the queue."""
        if self._due and (horizon is None or self._due[0][0] < horizon):
            return self._due.pop(0)
        return None

    def __len__(self) -> int:
        return len(self._due)


def grouped(rows: list[tuple[datetime, str]]) -> list[list[str]]:
    """Texts closed at the same moment, together, in order of (moment, arrival)."""
    return [[text for _, text in group] for _, group in groupby(rows, key=lambda row: row[0])]


class DrainPlayer:
    """Plays one world's customer turns through `drain`, moving `clock` (its one cell)."""

    def __init__(
        self,
        drain: Drain,
        sessions: Any,
        clock: list[datetime],
        *,
        organization_id: int,
        conversation_id: int,
        contact_id: int,
        sender: Person,
    ) -> None:
        self.drain, self.sessions, self.clock = drain, sessions, clock
        self.organization_id, self.conversation_id, self.contact_id = (
            organization_id,
            conversation_id,
            contact_id,
        )
        self.sender = sender
        self.schedule = Schedule()
        self._seen_out = 0
        self._seen_in: set[int] = set()

    async def play(self, turn: Turn, arrival: datetime, horizon: datetime | None) -> TurnRecord:
        """Store the turn's texts at `arrival`, then run the drains due before `horizon`.

        Raises:
            ScenarioError: a text was not stored, or landed outside the scenario's
                conversation, or the drains kept queueing themselves past `MAX_DRAINS`.
        """
        self.clock[0] = arrival
        for text in turn.texts():
            await self._store(text, arrival)
        runs = 0
        while (job := self.schedule.take(horizon)) is not None:
            runs += 1
            if runs > MAX_DRAINS:
                raise ScenarioError(f"the worker queued over {MAX_DRAINS} drains in one turn")
            at, conversation_id = job
            self.clock[0] = max(at, self.clock[0])
            for queued, delay_ms in await self.drain(conversation_id):
                self.schedule.add(self.clock[0] + timedelta(milliseconds=delay_ms), queued)
        return await self._record(turn)

    async def _store(self, text: str, at: datetime) -> None:
        phone = re.sub(r"\D", "", self.sender.phone)
        event = Inbound(
            provider_id=f"eval-{uuid.uuid4().hex}",
            chat_id=f"{phone}@s.whatsapp.net",
            sender=Sender(phone=phone, name=self.sender.name),
            from_me=False,
            sent_at=at,
            kind="text",
            text=text,
        )
        async with self.sessions() as session, session.begin():
            instance = (
                await session.exec(
                    select(WhatsAppInstance)
                    .where(WhatsAppInstance.organization_id == self.organization_id)
                    .order_by(col(WhatsAppInstance.id))
                )
            ).first()
            if instance is None:
                raise ScenarioError("`via: drain` needs a WhatsApp instance in the organization")
            report = await ingest(session, instance, [event], at)
        if report.stored != 1:
            raise ScenarioError(f"the text {text!r} was stored {report.stored} times")
        if set(report.drains) - {self.conversation_id}:
            raise ScenarioError("a text landed outside the scenario's conversation")
        for conversation_id, delay_ms in report.drains.items():
            self.schedule.add(at + timedelta(milliseconds=delay_ms), conversation_id)

    async def _record(self, turn: Turn) -> TurnRecord:
        """What the turn left in the database: messages sent, customer messages closed."""
        mine = (
            Message.organization_id == self.organization_id,
            Conversation.contact_id == self.contact_id,
        )
        joined = col(Conversation.id) == col(Message.conversation_id)
        async with self.sessions() as session:
            sent = list(
                await session.exec(
                    select(Message.id, Message.content)
                    .join(Conversation, joined)
                    .where(*mine, Message.direction == "outgoing", col(Message.id) > self._seen_out)
                    .order_by(col(Message.id))
                )
            )
            closed = list(
                await session.exec(
                    select(Message.id, Message.processed_at, Message.content, Message.status)
                    .join(Conversation, joined)
                    .where(
                        *mine,
                        Message.direction == "incoming",
                        Message.status != "pending",
                        col(Message.id).not_in(sorted(self._seen_in) or [0]),
                    )
                    .order_by(col(Message.processed_at), col(Message.message_at), col(Message.id))
                )
            )
        self._seen_out = max([self._seen_out, *(id_ or 0 for id_, _ in sent)])
        self._seen_in |= {id_ or 0 for id_, *_ in closed}
        texts = [content or "" for _, content in sent]
        failed = sum(1 for *_, status in closed if status == "failed")
        return TurnRecord(
            user=turn.texts(),
            reply="\n".join(texts) if texts else None,
            tools=[],
            ungrounded=[],
            error=f"the worker gave up on {failed} messages" if failed else None,
            prompt_tokens=[],
            static_tokens=0,
            sent=texts,
            answered=grouped([(at, text or "") for _id, at, text, _status in closed if at]),
        )
