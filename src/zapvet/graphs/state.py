"""State shared by both agent graphs: the messages, plus what one turn learns on its way."""

from __future__ import annotations

import operator
from typing import Annotated, Any

from langgraph.graph import MessagesState
from langgraph.managed import RemainingSteps


class AgentState(MessagesState, total=False):
    """`messages` holds the conversation history in, and this turn's model and tool messages.

        `prepare` fills the prompts; when it can answer on its own (a confirmation, an opt-out)
        it sets `reply` and the model is not called. `escalated` is or-reduced so parallel
        tool calls may both set it. `alerts` are the ids of the staff alerts an escalation
        committed, for the drain to send once the turn is over. `handoff` asks the drain to
    escalate the conversation when the turn gives up (its step limit).
    """

    escalated: Annotated[bool, operator.or_]
    handoff: bool
    #: The customer asked to have their data erased: the drain proposes it to the owner.
    erasure_requested: bool
    alerts: Annotated[list[int], operator.add]
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
    #: What the turn's media cost, recorded with it: seconds transcribed, images shown.
    audio_seconds: float
    images: int
    #: Set by a caller that stores the turn's `ai_interactions` row itself, in the transaction
    #: that stores the reply (the drain): `finalize` then leaves the row's fields in
    #: `interaction` instead of writing it.
    record_by_caller: bool
    interaction: dict[str, Any] | None
