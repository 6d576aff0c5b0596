"""A worker entry (`dramatiq tests.faults.crashing_entry`) whose model kills the process.

Production's entry, except that a turn whose new customer messages contain the poison
marker ends the worker process at once with `os._exit`, as a segfault or the OOM killer
would: no exception, no ack, no unlock, no shutdown hook.
"""

from __future__ import annotations

import os
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from zapvet.config import Settings
from zapvet.llm import openai as production
from zapvet.llm.openai import MAX_RETRIES, REQUEST_TIMEOUT_S

POISON = "☠"


def _new_texts(messages: list[BaseMessage]) -> list[str]:
    last = max((i for i, m in enumerate(messages) if isinstance(m, SystemMessage)), default=-1)
    return [str(m.content) for m in messages[last + 1 :] if isinstance(m, HumanMessage)]


class CrashingChatOpenAI(ChatOpenAI):
    """ChatOpenAI that dies with its process when this turn's messages carry POISON."""

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        if isinstance(input, list) and any(POISON in t for t in _new_texts(input)):
            os._exit(70)
        return await super().ainvoke(input, config, **kwargs)


def _crashing_model(
    settings: Settings, *, model: str | None = None, temperature: float | None = None
) -> BaseChatModel:
    return CrashingChatOpenAI(
        model=model or settings.model,
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        temperature=temperature,
        timeout=REQUEST_TIMEOUT_S,
        max_retries=MAX_RETRIES,
        stream_usage=True,
    )


production.build_chat_model = _crashing_model  # before the entry imports it

from zapvet.queue.entry import broker  # noqa: E402

__all__ = ["broker"]
