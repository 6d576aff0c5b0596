"""A scenario turn with media, played through the worker's own code: the gateway's webhook is
parsed (`parse_evolution`), stored (`bridge.ingest`), made usable (`media.prepare`) and turned
into the agent's messages (`graphs.history.to_langchain`), as `queue.drain` does.

The bytes, the gateway that serves them and the transcription endpoint are the caller's: a
`MediaRig` (fakes on loopback, from `zapvet eval` or the tests). Passing failures are retried
at once, not after the worker's 2/4/8 s: the rig's `MediaSetup` sets the schedule it answers to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx
from sqlmodel import col, select, update

from zapvet.bridge.evolution import parse_evolution
from zapvet.bridge.ingest import ingest
from zapvet.evals.scenario import MediaItem, Person
from zapvet.media.prepare import MediaSetup, MediaTurn, prepare_media
from zapvet.models import AISettings, Message, WhatsAppInstance, pending_messages

#: Rounds of `prepare_media` a turn may take: one per passing failure, and then some.
MAX_PREPARE_ROUNDS = 10


class MediaRig(Protocol):
    """Where a scenario's media live: a gateway serving the bytes, a transcription endpoint."""

    @property
    def setup(self) -> MediaSetup:
        """How `prepare_media` reaches transcription, with its limits and retry schedule."""
        ...

    @property
    def gateway_url(self) -> str:
        """The Evolution API that serves the bytes (the instance's `api_url`)."""
        ...

    @property
    def gateway_key(self) -> str:
        """The `apikey` that gateway expects."""
        ...

    def webhook(
        self, item: str | MediaItem, *, instance: str, sender: Person, at: datetime
    ) -> dict[str, Any]:
        """The Evolution `messages.upsert` webhook for `item` sent by `sender` at `at`, its
        bytes registered at the gateway and its transcript at the transcription endpoint."""
        ...


@dataclass
class MediaPlay:
    """What a media turn left to answer: its pending rows (none: only stickers) and what
    `prepare_media` made of them."""

    rows: list[Message] = field(default_factory=list)
    media: MediaTurn | None = None

    @property
    def ids(self) -> list[int]:
        return [row.id or 0 for row in self.rows]


class MediaPlayer:
    """Plays media turns into one scenario world's organization and conversation."""

    def __init__(
        self,
        rig: MediaRig,
        sessions: Any,
        http: httpx.AsyncClient,
        *,
        organization_id: int,
        conversation_id: int,
        sender: Person,
    ) -> None:
        self.rig, self.sessions, self.http = rig, sessions, http
        self.organization_id, self.conversation_id, self.sender = (
            organization_id,
            conversation_id,
            sender,
        )
        self._instance_id: int | None = None

    async def play(self, items: Sequence[str | MediaItem], now: datetime) -> MediaPlay:
        """Store `items` as the worker's webhook would, in order, and prepare their media.

        Raises:
            RuntimeError: the organization has no Evolution instance, a webhook stored
                nothing, or it landed in another conversation than the scenario's.
        """
        instance_id = await self._instance()
        for item in items:
            async with self.sessions() as session, session.begin():
                instance = await session.get(WhatsAppInstance, instance_id)
                assert instance is not None
                payload = self.rig.webhook(
                    item, instance=instance.instance, sender=self.sender, at=now
                )
                report = await ingest(session, instance, parse_evolution(payload), now)
            if report.stored != 1:
                raise RuntimeError(f"the webhook for {item!r} stored {report.stored} messages")
            if set(report.drains) - {self.conversation_id}:
                raise RuntimeError("a media webhook landed outside the scenario's conversation")
        play = MediaPlay(rows=await self._pending())
        if not play.rows:
            return play
        async with self.sessions() as session:
            settings = await session.get(AISettings, self.organization_id)
        for _ in range(MAX_PREPARE_ROUNDS):
            play.media = await prepare_media(
                self.sessions, self.http, self.rig.setup, play.ids, settings
            )
            if play.media.retry_in_ms is None:
                break
        else:
            raise RuntimeError(f"media still not ready after {MAX_PREPARE_ROUNDS} rounds")
        play.rows = await self._pending()
        return play

    async def close(self, play: MediaPlay, now: datetime) -> None:
        """Mark the turn's rows processed, as the drain does once the reply is stored."""
        if not play.rows:
            return
        async with self.sessions() as session, session.begin():
            await session.exec(
                update(Message)
                .where(col(Message.id).in_(play.ids), col(Message.status) == "pending")
                .values(status="processed", processed_at=now)
            )

    async def _pending(self) -> list[Message]:
        async with self.sessions() as session:
            return list(
                await session.exec(pending_messages(self.organization_id, self.conversation_id))
            )

    async def _instance(self) -> int:
        """The organization's Evolution instance, pointed at the rig's gateway once."""
        if self._instance_id is not None:
            return self._instance_id
        async with self.sessions() as session, session.begin():
            instance = (
                await session.exec(
                    select(WhatsAppInstance)
                    .where(
                        WhatsAppInstance.organization_id == self.organization_id,
                        WhatsAppInstance.provider == "evolution",
                    )
                    .order_by(col(WhatsAppInstance.id))
                )
            ).first()
            if instance is None:
                raise RuntimeError("media turns need an Evolution instance in the organization")
            instance.api_url, instance.api_key = self.rig.gateway_url, self.rig.gateway_key
            session.add(instance)
            self._instance_id = instance.id or 0
        return self._instance_id
