"""A chat model that plays a script: tests, scenarios and the offline demo run without an LLM.

It binds tools like a real model (and records the schemas it was offered), never streams
(streamed fake models drop tool calls; research/langgraph.md §4), fills in token usage
with real o200k_base counts, and can raise scripted errors to exercise failure paths.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr, SkipValidation

from zapvet.errors import ScriptExhaustedError as ScriptExhaustedError
from zapvet.llm.tokens import count_message_tokens, count_tokens

ScriptItem = AIMessage | Exception
Responder = Callable[[Sequence[BaseMessage]], ScriptItem]


class ScriptedChatModel(BaseChatModel):
    """Replies with `script` in order, then with `responder` (if any) for every later call."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # Items are AIMessages or exceptions; pydantic would try (and fail) to coerce the latter.
    script: SkipValidation[list[ScriptItem]] = Field(default_factory=list)
    responder: Responder | None = None
    model_name: str = "scripted"
    disable_streaming: bool = True
    calls: list[dict[str, Any]] = Field(default_factory=list)
    _position: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _ids: Any = PrivateAttr(default_factory=lambda: itertools.count(1))

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(
        self, tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def add(self, *items: ScriptItem) -> None:
        """Append replies to the script (scenarios add one turn's replies at a time)."""
        with self._lock:
            self.script.extend(items)

    @property
    def remaining(self) -> int:
        return len(self.script) - self._position

    def _next(self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        with self._lock:
            self.calls.append({"messages": list(messages), **kwargs})
            if self._position < len(self.script):
                item = self.script[self._position]
                self._position += 1
            elif self.responder is not None:
                item = self.responder(messages)
            else:
                raise ScriptExhaustedError(
                    f"the script has {len(self.script)} replies and all were used"
                )
        if isinstance(item, Exception):
            raise item
        return self._complete(item, messages)

    def _complete(self, item: AIMessage, messages: Sequence[BaseMessage]) -> AIMessage:
        calls = [
            {**call, "id": call.get("id") or f"call_{next(self._ids)}", "type": "tool_call"}
            for call in item.tool_calls
        ]
        usage = item.usage_metadata or {
            "input_tokens": count_message_tokens(list(messages)),
            "output_tokens": count_tokens(str(item.content))
            + sum(count_tokens(str(call["args"])) for call in calls),
            "total_tokens": 0,
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        return AIMessage(
            content=item.content,
            tool_calls=calls,
            invalid_tool_calls=item.invalid_tool_calls,
            usage_metadata=usage,
            response_metadata={"model_name": self.model_name, "finish_reason": "stop"},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(messages, kwargs))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, **kwargs)
