"""Conversation scenarios (YAML): who writes what, what the model says, what must be true after.

A scenario names an organization file, a frozen clock, the customer and any rows that exist
before the first turn, then the customer's turns. Each turn may carry the scripted model's
outputs (`model:`), used with `--model scripted` and ignored with a real model. The `end:`
section is checked after the last turn, whatever model ran: the database's end state, and
facts the replies must (or must not) contain.

    name: rex-booking
    org: ../../examples/petfeliz.toml
    now: 2026-11-25T14:00:00-03:00
    contact: {phone: "5511999999999", name: Cliente}   # agent: aurora → an owner phone
    setup:
      pets: [{name: Rex, species: cachorro, breed: Golden Retriever, age_years: 3}]
      appointments: [{ref: a1, pet: Rex, service: Banho, start: 2026-11-26T09:00}]
    turns:
      - user: "Quero cancelar o banho do Rex"
        model:
          - call: cancel_appointment
            args: {appointment_id: "${a1}"}
          - say: "Pronto, cancelei o banho de quinta-feira às 09:00."
        expect: {tools: [cancel_appointment], reply_contains: ["cancel"]}
    end:
      appointments: [{pet: Rex, service: Banho, start: 2026-11-26T09:00, status: cancelled}]
      replies_contain: ["09:00"]
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from zapvet.errors import ScenarioError as ScenarioError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PetRow(_Strict):
    name: str
    species: str = "cachorro"
    breed: str | None = None
    age_years: int | None = None


class AppointmentRow(_Strict):
    ref: str | None = None
    pet: str | None = None
    service: str
    start: datetime  # local wall time when naive
    status: Literal["scheduled", "confirmed", "completed", "cancelled", "no_show"] = "scheduled"
    resource: str | None = None


class Person(_Strict):
    phone: str
    name: str | None = None
    pets: list[PetRow] = []
    appointments: list[AppointmentRow] = []
    conversation: Literal["active", "escalated", "closed"] | None = None
    escalation_reason: str | None = None


class BusyDay(_Strict):
    """A resource fully booked (every opening interval, at full capacity) on a local date."""

    resource: str
    date: date


class Setup(_Strict):
    pets: list[PetRow] = []
    appointments: list[AppointmentRow] = []
    others: list[Person] = []
    busy: list[BusyDay] = []
    conversation: Literal["active", "escalated", "closed"] = "active"


class ToolCallStep(_Strict):
    name: str
    args: dict[str, Any] = {}


class ModelStep(_Strict):
    """One scripted model output: text (`say`), tool calls (`call` or `calls`), or an error."""

    say: str | None = None
    call: str | None = None
    args: dict[str, Any] = {}
    calls: list[ToolCallStep] = []
    error: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ModelStep:
        kinds = [
            self.say is not None,
            self.call is not None,
            bool(self.calls),
            self.error is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError("a model step is exactly one of: say, call (+args), calls, error")
        return self

    def tool_calls(self) -> list[ToolCallStep]:
        if self.call is not None:
            return [ToolCallStep(name=self.call, args=self.args)]
        return list(self.calls)


class TurnExpect(_Strict):
    tools: list[str] | None = None
    reply_contains: list[str] = []
    reply_excludes: list[str] = []
    silent: bool = False


class Turn(_Strict):
    user: str | list[str]
    at: datetime | None = None  # the clock for this turn (and after); aware
    model: list[ModelStep] = []
    expect: TurnExpect = TurnExpect()

    def texts(self) -> list[str]:
        return [self.user] if isinstance(self.user, str) else list(self.user)


class PetExpect(_Strict):
    name: str
    species: str | None = None
    breed: str | None = None
    age_years: int | None = None


class AppointmentExpect(_Strict):
    pet: str | None = None
    service: str
    start: datetime
    status: str = "scheduled"
    price: str | None = None


class ClientExpect(_Strict):
    """What must be true of one of `setup.others`, named by its `name`."""

    appointments: list[AppointmentExpect] | None = None
    conversation: Literal["active", "escalated", "closed"] | None = None
    outbox_contains: list[str] = []


class EndExpect(_Strict):
    pets: list[PetExpect] | None = None
    appointments: list[AppointmentExpect] | None = None
    conversation: Literal["active", "escalated", "closed"] | None = None
    replies_contain: list[str] = []
    replies_exclude: list[str] = []
    untouched: list[str] = []
    max_ungrounded: int = 0
    errors: int = 0
    clients: dict[str, ClientExpect] = {}
    audit: list[str] | None = None
    proposals: list[str] | None = None


class Scenario(_Strict):
    name: str
    description: str = ""
    agent: Literal["client", "aurora"] = "client"
    org: Path
    now: datetime
    contact: Person
    setup: Setup = Setup()
    turns: list[Turn] = Field(min_length=1)
    end: EndExpect = EndExpect()
    path: Path | None = None

    @model_validator(mode="after")
    def _aware_now(self) -> Scenario:
        moments = [self.now, *(turn.at for turn in self.turns if turn.at)]
        if any(moment.tzinfo is None for moment in moments):
            raise ValueError("now must carry its UTC offset, e.g. 2026-11-25T14:00:00-03:00")
        return self

    def org_path(self) -> Path:
        base = self.path.parent if self.path else Path.cwd()
        return (base / self.org).resolve()


def load_scenario(path: Path | str) -> Scenario:
    """Read a scenario file.

    Raises:
        ScenarioError: unreadable, not YAML, or not a valid scenario (with the key at fault).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top")
    try:
        scenario = Scenario.model_validate({**data, "path": path})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ScenarioError(f"{path}: {problems}") from None
    if not scenario.org_path().exists():
        raise ScenarioError(f"{path}: organization file {scenario.org_path()} not found")
    return scenario


def expand_paths(paths: list[Path]) -> list[Path]:
    """Scenario files named directly, or every *.yaml under a named directory (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.rglob("*.yaml")))
        else:
            files.append(path)
    return files
