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

`setup.care_invitation: {pet, service}` makes our last message before the first turn a care
invitation, worded and with free slots as the scheduler sends it at `now` (the pet needs a
completed appointment of that service in `setup.appointments`); `end.opted_out` checks
whether the customer ends opted out of proactive messages.

A turn's `user` list may hold media items beside texts, each a mapping with one key:
`audio {transcript, seconds: 3, fail: null|5xx|4xx}`, `image {caption: "", size_mb: null}`,
`document {file_name: documento.pdf, lines: [...], caption: ""}` (a PDF of those lines),
`video {caption: "", seconds: 10, size_mb: null}`, `sticker {}`,
`location {latitude, longitude, name: null, address: null}` and `contact {name, phone}`.
They are played as the worker plays them (`evals.media`): a voice note reads as its
transcript; `fail` makes every transcription of it fail (5xx: after the retries), `size_mb`
sends a file that large; a sticker alone gets no reply at all (`expect.silent`), media
nobody can use get the worker's notice without the model. `expect.heard` lists words the
agent must have been given in the turn (a transcript, a PDF's text, an address).

      - user:
          - audio: {transcript: "Quero agendar uma consulta pro Rex amanhã às 10", seconds: 4}
          - "é pro Rex mesmo"
        expect: {heard: ["consulta pro Rex"]}

`via: drain` plays each turn through the worker's drain instead of straight to the agent:
the texts are stored as the webhook stores them, and the drains the worker queues (the
debounce, a limit's recheck) run when due on the world's frozen clock, those due before
the next turn's messages within this turn, every one left after the last turn. `limits`
then replaces keys of the organization's `[limits]` (not `org_turns_per_minute`, which
counts by the wall clock). In any scenario a turn's `after: SECONDS` moves its messages
that long past the turn before's (through the drain, with a 3 s debounce, our reply leaves
3 s after the messages: `after: 4` answers it within a second). A drain turn is checked
by what the customer got: `expect.sent` (every message received in the turn, in order, one
piece of text each: the count is exact) and `expect.answered` (the customer's messages
closed in the turn, grouped by the moment each group was closed); the agent's tools and
input are not seen. `end` may add `escalation_reason` (words the reason contains) and
`alerts` (escalation alerts queued for the owners).

    via: drain
    limits: {contact_messages_per_minute: 2}
    turns:
      - user: ["oi", "tem banho hoje?", "e tosa?"]
        model: [{say: "Oi! Tenho banho às 15:00."}]
        expect:
          sent: ["15:00", "Já já eu respondo"]
          answered: [["oi", "tem banho hoje?"]]
      - user: "?"   # 20 s later: the window reopens a minute after the first answer
        after: 20
        model: [{say: "Tosa também às 16:00."}]
        expect: {answered: [["e tosa?", "?"]]}
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from zapvet.errors import ScenarioError as ScenarioError
from zapvet.org.spec import LimitsSection


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


class CareInvitation(_Strict):
    """A care invitation we sent the customer at `now`, as the scheduler words it (its pet
    needs a completed appointment of the service in `appointments`)."""

    pet: str
    service: str


class Setup(_Strict):
    pets: list[PetRow] = []
    appointments: list[AppointmentRow] = []
    others: list[Person] = []
    busy: list[BusyDay] = []
    conversation: Literal["active", "escalated", "closed"] = "active"
    #: Our last message before the first turn: a care invitation (`proactive.care`).
    care_invitation: CareInvitation | None = None


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


class AudioSpec(_Strict):
    """A voice note saying `transcript`; `fail` makes every transcription of it fail."""

    transcript: str
    seconds: int = 3
    fail: Literal["5xx", "4xx"] | None = None


class ImageSpec(_Strict):
    caption: str = ""
    size_mb: float | None = None  # a file this large (over the limit: too large)


class DocumentSpec(_Strict):
    file_name: str = "documento.pdf"
    lines: list[str] = []  # the text of the PDF made for it
    caption: str = ""


class VideoSpec(_Strict):
    caption: str = ""
    seconds: int = 10
    size_mb: float | None = None


class StickerSpec(_Strict):
    pass


class LocationSpec(_Strict):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class ContactSpec(_Strict):
    name: str
    phone: str


class Audio(_Strict):
    audio: AudioSpec


class Image(_Strict):
    image: ImageSpec


class Document(_Strict):
    document: DocumentSpec


class Video(_Strict):
    video: VideoSpec


class Sticker(_Strict):
    sticker: StickerSpec


class Location(_Strict):
    location: LocationSpec


class ContactCard(_Strict):
    contact: ContactSpec


MediaItem = Audio | Image | Document | Video | Sticker | Location | ContactCard
MEDIA_KINDS = ("audio", "image", "document", "video", "sticker", "location", "contact")


def _item_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    return None


#: One thing the customer sends in a turn: a text, or one media item.
UserItem = Annotated[
    Annotated[str, Tag("text")]
    | Annotated[Audio, Tag("audio")]
    | Annotated[Image, Tag("image")]
    | Annotated[Document, Tag("document")]
    | Annotated[Video, Tag("video")]
    | Annotated[Sticker, Tag("sticker")]
    | Annotated[Location, Tag("location")]
    | Annotated[ContactCard, Tag("contact")],
    Discriminator(
        _item_kind,
        custom_error_type="user_item",
        custom_error_message="a user item is a text or one key of: " + ", ".join(MEDIA_KINDS),
    ),
]


def label(item: str | MediaItem) -> str:
    """How an item reads in reports: the text itself, or its kind and what it carries."""
    match item:
        case str():
            return item
        case Audio(audio=spec):
            return f"[áudio] {spec.transcript}"
        case Location(location=spec):
            return f"[localização] {spec.address or spec.name or ''}".rstrip()
        case ContactCard(contact=spec):
            return f"[contato] {spec.name}"
    kind = _item_kind(item) or "mídia"
    caption = getattr(getattr(item, kind), "caption", "")
    return f"[{kind}] {caption}".rstrip()


class TurnExpect(_Strict):
    tools: list[str] | None = None
    reply_contains: list[str] = []
    reply_excludes: list[str] = []
    silent: bool = False
    #: Words the agent must have been given this turn (a transcript, a PDF's text, an
    #: address): what media became, checked whatever model runs.
    heard: list[str] = []
    #: Every message the customer received during the turn, in order: one piece of text per
    #: message, so the count is exact (a notice sent twice fails).
    sent: list[str] | None = None
    #: `via: drain`: the customer's messages the worker closed during the turn, in order,
    #: grouped by the moment each group was closed (one answer or hand-off per group).
    answered: list[list[str]] | None = None


class Turn(_Strict):
    user: str | list[UserItem]
    at: datetime | None = None  # the clock for this turn (and after); aware
    #: Seconds on the world's clock between the previous turn's messages and this turn's.
    after: float | None = Field(default=None, ge=0, le=86_400)
    model: list[ModelStep] = []
    expect: TurnExpect = TurnExpect()

    @model_validator(mode="after")
    def _one_moment(self) -> Turn:
        if self.at is not None and self.after is not None:
            raise ValueError("a turn has `at` (a moment) or `after` (seconds), not both")
        return self

    def items(self) -> list[str | MediaItem]:
        return [self.user] if isinstance(self.user, str) else list(self.user)

    def has_media(self) -> bool:
        return any(not isinstance(item, str) for item in self.items())

    def texts(self) -> list[str]:
        """What the customer sent, as text (media items by `label`)."""
        return [label(item) for item in self.items()]


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
    #: Words the conversation's escalation reason must contain.
    escalation_reason: str | None = None
    #: Escalation alerts queued for the owners about this customer.
    alerts: int | None = Field(default=None, ge=0)
    replies_contain: list[str] = []
    replies_exclude: list[str] = []
    untouched: list[str] = []
    max_ungrounded: int = 0
    errors: int = 0
    clients: dict[str, ClientExpect] = {}
    audit: list[str] | None = None
    proposals: list[str] | None = None
    #: Whether the customer ends opted out of our proactive messages ("PARAR").
    opted_out: bool | None = None


#: `[limits]` a scenario may not set: the drain counts the organization's turns by the
#: wall clock (`ai_interactions.created_at`), not by the scenario's frozen one.
UNSCENARIO_LIMITS = ("org_turns_per_minute",)


class Scenario(_Strict):
    name: str
    description: str = ""
    agent: Literal["client", "aurora"] = "client"
    #: `agent`: each turn goes straight to the agent graph; `drain`: through the worker's
    #: drain (debounce, pausing, `[limits]`), its queued drains run on the world's clock.
    via: Literal["agent", "drain"] = "agent"
    org: Path
    #: `[limits]` keys that replace the organization file's (`via: drain` only).
    limits: LimitsSection | None = None
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
        arrivals = self.arrivals()
        for index, (before, moment) in enumerate(itertools.pairwise(arrivals), start=2):
            if moment < before:
                raise ValueError(f"turn {index} is `at` a moment before the turn before it")
        return self

    @model_validator(mode="after")
    def _fits_its_path(self) -> Scenario:
        drain = self.via == "drain"
        if self.limits is not None and not drain:
            raise ValueError("`limits` apply in the worker's drain: set `via: drain`")
        given = self.limits.model_fields_set if self.limits else set()
        if fixed := sorted(given & set(UNSCENARIO_LIMITS)):
            raise ValueError(f"limits.{fixed[0]} counts by the wall clock: not for a scenario")
        for index, turn in enumerate(self.turns, start=1):
            expect = turn.expect
            if drain and turn.has_media():
                raise ValueError(f"turn {index}: `via: drain` plays texts only")
            if drain and (expect.tools is not None or expect.heard):
                raise ValueError(
                    f"turn {index}: `via: drain` sees what the customer got, not the agent's "
                    "tools or input: use expect.sent and expect.answered"
                )
            if not drain and expect.answered is not None:
                raise ValueError(f"turn {index}: expect.answered needs `via: drain`")
        return self

    def arrivals(self) -> list[datetime]:
        """When each turn's messages arrive: its `at`, or `after` seconds (0 unless given)
        past the turn before's."""
        moments: list[datetime] = []
        moment = self.now
        for turn in self.turns:
            moment = turn.at or moment + timedelta(seconds=turn.after or 0)
            moments.append(moment)
        return moments

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
