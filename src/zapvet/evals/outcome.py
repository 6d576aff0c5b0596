"""What one scenario run produced: each turn's record, and every expectation that failed."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TurnRecord:
    user: list[str]
    reply: str | None
    tools: list[str]
    ungrounded: list[str]
    error: str | None
    prompt_tokens: list[int]
    static_tokens: int
    #: The agent ran (False: the turn was silent or a media notice, as the worker decides).
    agent: bool = True
    #: The customer's messages of this turn as the agent read them (media described).
    heard: list[str] = field(default_factory=list)
    #: Every message the customer received during the turn, in order.
    sent: list[str] = field(default_factory=list)
    #: `via: drain`: the customer's messages closed during the turn, grouped by the moment.
    answered: list[list[str]] = field(default_factory=list)


@dataclass
class ScenarioRun:
    """The outcome of one run: `failures` lists every expectation that did not hold."""

    name: str
    failures: list[str] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures
