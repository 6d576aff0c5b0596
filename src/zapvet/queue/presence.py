"""Behaving like a person on WhatsApp: "digitando…" while a turn runs, read receipts after.

Both are courtesies: they run as background tasks beside the turn, never delay it or its
reply, and a gateway that refuses or times out is logged and forgotten. `[ai]
typing_indicator` and `read_receipts` turn them off per organization. On the Cloud API the
typing indicator marks the customer's message read too, so it is shown only when read
receipts are on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from zapvet.bridge.senders import Receipts, build_receipts
from zapvet.logging import get_logger
from zapvet.models import WhatsAppInstance
from zapvet.models.organization import AISettings

log = get_logger("zapvet.queue.presence")

#: How long each Evolution `sendPresence` asks for (Evolution holds the request that long,
#: then sends "paused"); the indicator is asked again every `TYPING_MS` while the turn runs.
TYPING_MS = 8_000
#: Evolution presence calls made for one turn at most (~1.5 min of "digitando…").
MAX_TYPING_CALLS = 12
#: A courtesy call gets this long past its own delay; a hung gateway must not pile tasks up.
TIMEOUT_S = 10.0

#: Tasks still running, held so that the event loop does not drop them half-way.
_TASKS: set[asyncio.Task[None]] = set()

#: Builds the receipts of an instance (a seam for tests).
Build = Callable[[WhatsAppInstance, httpx.AsyncClient], Receipts]


@dataclass(frozen=True)
class Chat:
    """Where a batch came from: the instance, the chat and the customer's message ids."""

    instance: WhatsAppInstance
    chat_id: str
    provider_ids: tuple[str, ...]


def chat_of(
    instance: WhatsAppInstance | None, chat_id: str | None, provider_ids: Sequence[str | None]
) -> Chat | None:
    """The batch's chat, or None when there is nowhere to show anything."""
    ids = tuple(pid for pid in provider_ids if pid)
    if instance is None or not chat_id or not ids:
        return None
    return Chat(instance, chat_id, ids)


def _wanted(settings: AISettings | None, name: str) -> bool:
    return bool(getattr(settings, name, True)) if settings is not None else True


def typing_wanted(settings: AISettings | None, provider: str) -> bool:
    if not _wanted(settings, "typing_indicator"):
        return False
    return provider != "cloud" or _wanted(settings, "read_receipts")


def _spawn(work: Callable[[], Awaitable[None]], what: str) -> asyncio.Task[None]:
    async def guarded() -> None:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a courtesy: the reply does not depend on it
            log.warning(f"{what} not shown", error_type=type(error).__name__, error=str(error))

    task = asyncio.get_running_loop().create_task(guarded())
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    return task


async def _ask(receipts: Receipts, chat: Chat) -> None:
    async with asyncio.timeout(TIMEOUT_S + TYPING_MS / 1000):
        await receipts.send_presence(chat.chat_id, chat.provider_ids[-1], delay_ms=TYPING_MS)


async def _keep_typing(receipts: Receipts, chat: Chat, done: asyncio.Event) -> None:
    """Ask again every `TYPING_MS` until `done`: Evolution holds each request that long and
    then sends "paused", so the next one starts as it ends. A request in flight is let
    finish (cut short, the indicator would be shown anyway and its connection wasted)."""
    for _ in range(MAX_TYPING_CALLS - 1):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TYPING_MS / 1000):
                await done.wait()
        if done.is_set():
            return
        _spawn(lambda: _ask(receipts, chat), "typing indicator")


@contextlib.asynccontextmanager
async def typing(
    http: httpx.AsyncClient,
    settings: AISettings | None,
    chat: Chat | None,
    *,
    build: Build = build_receipts,
) -> AsyncIterator[None]:
    """Show "digitando…" in `chat` while the block runs.

    The first request gets one turn of the event loop before the block (so it is on its way
    however short the turn); on Evolution the indicator is asked again while the block runs
    and told to stop when it ends. The Cloud API's lasts up to 25 s or until the reply.
    """
    done = asyncio.Event()
    if chat is not None and typing_wanted(settings, chat.instance.provider):
        try:
            receipts = build(chat.instance, http)
        except Exception as error:
            log.warning("typing not shown", error_type=type(error).__name__)
        else:
            _spawn(lambda: _ask(receipts, chat), "typing indicator")
            if chat.instance.provider == "evolution":
                _spawn(lambda: _keep_typing(receipts, chat, done), "typing indicator")
            await asyncio.sleep(0)
    try:
        yield
    finally:
        done.set()


def mark_read(
    http: httpx.AsyncClient,
    settings: AISettings | None,
    chat: Chat | None,
    *,
    build: Build = build_receipts,
) -> asyncio.Task[None] | None:
    """Mark the batch's messages read in the background (after its reply was sent)."""
    if chat is None or not _wanted(settings, "read_receipts"):
        return None
    try:
        receipts = build(chat.instance, http)
    except Exception as error:
        log.warning("read receipt not sent", error_type=type(error).__name__)
        return None

    async def work() -> None:
        async with asyncio.timeout(TIMEOUT_S):
            await receipts.mark_read(chat.chat_id, chat.provider_ids)

    return _spawn(work, "read receipt")


async def settle() -> None:
    """Wait for the courtesies this event loop still runs (a worker shutting down, tests);
    tasks of a loop that was closed under them are not waited for."""
    loop = asyncio.get_running_loop()
    while running := [task for task in _TASKS if task.get_loop() is loop]:
        await asyncio.gather(*running, return_exceptions=True)
