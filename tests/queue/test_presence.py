"""The typing indicator and read receipts around a turn, with a recording `Receipts`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from zapvet.bridge.senders import SendError
from zapvet.models import AISettings, WhatsAppInstance
from zapvet.queue import presence

pytestmark = pytest.mark.anyio


@dataclass
class Recording:
    """A `Receipts` that remembers its calls, or fails them all with `fail`."""

    fail: Exception | None = None
    calls: list[tuple[str, ...]] = field(default_factory=list)

    async def send_presence(self, chat_id: str, last_id: str, *, delay_ms: int) -> None:
        self.calls.append(("presence", chat_id, last_id, str(delay_ms)))
        if self.fail is not None:
            raise self.fail

    async def mark_read(self, chat_id: str, provider_ids: Sequence[str]) -> None:
        self.calls.append(("read", chat_id, *provider_ids))
        if self.fail is not None:
            raise self.fail


def chat(provider: str = "evolution") -> presence.Chat:
    instance = WhatsAppInstance(
        id=1, organization_id=1, provider=provider, instance="petfeliz", api_url="http://x"
    )
    found = presence.chat_of(instance, "5511977776666@s.whatsapp.net", ["3EB0A", None, "3EB0B"])
    assert found is not None
    return found


def settings(**values: bool) -> AISettings:
    return AISettings(organization_id=1, **values)


async def test_presence_typing_asks_once_for_a_short_turn_and_stops_with_it() -> None:
    receipts = Recording()
    async with httpx.AsyncClient() as http:
        async with presence.typing(http, None, chat(), build=lambda *_: receipts):
            turn_saw = list(receipts.calls)  # the indicator's request left before the turn ran
        await presence.settle()

    assert (
        turn_saw
        == receipts.calls
        == [("presence", "5511977776666@s.whatsapp.net", "3EB0B", str(presence.TYPING_MS))]
    )


async def test_presence_a_long_turn_keeps_typing_until_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(presence, "TYPING_MS", 1)  # each request "holds" 1 ms
    receipts = Recording()
    asked_again = asyncio.Event()

    async def send_presence(chat_id: str, last_id: str, *, delay_ms: int) -> None:
        receipts.calls.append(("presence", chat_id, last_id, str(delay_ms)))
        if len(receipts.calls) == 3:
            asked_again.set()

    receipts.send_presence = send_presence  # type: ignore[method-assign]
    async with httpx.AsyncClient() as http:
        async with presence.typing(http, None, chat(), build=lambda *_: receipts):
            await asked_again.wait()  # the turn lasts until the indicator was asked thrice
        await presence.settle()
        after = len(receipts.calls)
        await presence.settle()

    assert 3 <= after <= presence.MAX_TYPING_CALLS
    assert len(receipts.calls) == after  # stopped with the turn


async def test_presence_a_failing_gateway_never_reaches_the_turn() -> None:
    receipts = Recording(fail=SendError(503, "down"))
    async with httpx.AsyncClient() as http:
        async with presence.typing(http, None, chat(), build=lambda *_: receipts):
            result = "answered"
        task = presence.mark_read(http, None, chat(), build=lambda *_: receipts)
        await presence.settle()

    assert result == "answered"
    assert task is not None and task.done() and task.exception() is None
    assert [call[0] for call in receipts.calls] == ["presence", "read"]


async def test_presence_read_receipt_names_the_batch_oldest_first() -> None:
    receipts = Recording()
    async with httpx.AsyncClient() as http:
        presence.mark_read(http, settings(), chat(), build=lambda *_: receipts)
        await presence.settle()

    assert receipts.calls == [("read", "5511977776666@s.whatsapp.net", "3EB0A", "3EB0B")]


async def test_presence_settings_turn_each_off() -> None:
    receipts = Recording()
    off = settings(read_receipts=False, typing_indicator=False)
    async with httpx.AsyncClient() as http:
        async with presence.typing(http, off, chat(), build=lambda *_: receipts):
            pass
        assert presence.mark_read(http, off, chat(), build=lambda *_: receipts) is None
        await presence.settle()

    assert receipts.calls == []


def test_presence_cloud_typing_needs_read_receipts_since_it_marks_read() -> None:
    no_receipts = settings(read_receipts=False, typing_indicator=True)

    assert presence.typing_wanted(no_receipts, "evolution") is True
    assert presence.typing_wanted(no_receipts, "cloud") is False
    assert presence.typing_wanted(None, "cloud") is True


def test_presence_nowhere_to_show_it_without_instance_chat_or_ids() -> None:
    instance = chat().instance

    assert presence.chat_of(None, "5511@s.whatsapp.net", ["3EB0A"]) is None
    assert presence.chat_of(instance, None, ["3EB0A"]) is None
    assert presence.chat_of(instance, "5511@s.whatsapp.net", [None]) is None
