"""The client graph's state: the messages, plus what one turn learns on its way."""

from __future__ import annotations

import operator
from typing import Annotated

from langgraph.graph import MessagesState
from langgraph.managed import RemainingSteps


class ClientState(MessagesState, total=False):
    """`messages` holds the conversation history in, and this turn's model and tool messages.

    `escalated` is or-reduced so that parallel tool calls may both set it.
    """

    escalated: Annotated[bool, operator.or_]
    remaining_steps: RemainingSteps
    silenced: bool
    system_prompt: str
    context_prompt: str
    turn_start: int
    started: float
    today: str
    model: str | None
    temperature: float
    reply: str | None
    error: str | None
    ungrounded: list[str]
