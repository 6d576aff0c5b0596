"""The organization file (DESIGN §4): schema, loading and error locations.

`load_spec(path)` returns a validated `OrgSpec` or raises `OrgFileError` listing every
problem with its key path and, where it can be found, its line.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from zapvet.errors import OrgFileError, OrgFileProblem
from zapvet.models.organization import CARE_DEFAULTS, LIMIT_DEFAULTS, OverBudget
from zapvet.models.schedule import WEEKDAYS
from zapvet.money import parse_price
from zapvet.org.phones import checked_phone
from zapvet.org.templates import TEMPLATE_PARAMETERS, TemplateKind, unknown_parameters
from zapvet.pricing import ModelPrice
from zapvet.webhooks.events import EVENT_TYPES
from zapvet.webhooks.targets import check_addresses, literal, parse

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
#: Meta's template names (lowercase, digits, underscores) and language codes ("pt_BR", "es").
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")


def parse_hhmm(value: str) -> time:
    match = _HHMM.match(value.strip())
    if not match:
        raise ValueError(f'expected a time like "08:00", got {value!r}')
    return time(int(match[1]), int(match[2]))


def parse_interval(value: str) -> tuple[time, time]:
    """`"08:00-12:00"` → (08:00, 12:00); the end must come after the start."""
    start, sep, end = value.partition("-")
    if not sep:
        raise ValueError(f'expected an interval like "08:00-12:00", got {value!r}')
    opens, closes = parse_hhmm(start), parse_hhmm(end)
    if opens >= closes:
        raise ValueError(f"{value!r} closes before it opens")
    return opens, closes


def _cents(value: Any) -> int:
    if isinstance(value, str | int | float):
        return parse_price(value)
    raise ValueError('expected a price like "120.00"')


Cents = Annotated[int, BeforeValidator(_cents)]


def _budget(value: Any) -> int | None:
    """Centavos for a budget in reais ("150.00"); absent or empty: no budget."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str | int | float):
        try:
            return parse_price(value)
        except ValueError:
            pass
    raise ValueError(f'expected a non-negative amount in reais like "150.00", got {value!r}')


BudgetCents = Annotated[int | None, BeforeValidator(_budget)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class OrganizationSection(_Section):
    slug: str
    name: str = Field(min_length=1, max_length=200)
    timezone: str = "America/Sao_Paulo"

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError('use lowercase letters, digits and dashes (e.g. "petfeliz")')
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'unknown timezone {value!r} (e.g. "America/Sao_Paulo")') from None
        return value


class AISection(_Section):
    model: str | None = None
    temperature: float = Field(default=0.3, ge=0, le=2)
    personality: str = ""
    debounce_seconds: int = Field(default=3, ge=0, le=60)
    #: Photos reach the model as images; off for a model that does not accept them.
    vision: bool = True
    #: Speech-to-text model for voice notes (default: ZAPVET_TRANSCRIBE_MODEL).
    transcribe_model: str | None = Field(default=None, min_length=1, max_length=100)
    human_takeover_minutes: int = Field(default=480, gt=0)
    #: The customer's messages are marked read when the agent answers them.
    read_receipts: bool = True
    #: "digitando…" while a turn runs (on the Cloud API it marks the message read too).
    typing_indicator: bool = True


class BookingSection(_Section):
    slot_minutes: int = Field(default=30, ge=5, le=240)
    min_lead_minutes: int = Field(default=60, ge=0)
    horizon_days: int = Field(default=60, ge=1, le=365)


class AuroraSection(_Section):
    reminder_minutes_before: int = Field(default=60, gt=0)
    quiet_hours: str | None = None
    daily_summary_at: str | None = None
    confirmation_ttl_minutes: int = Field(default=10, gt=0)

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value is not None:
            start, sep, end = value.partition("-")
            if not sep:
                raise ValueError(f'expected an interval like "21:00-08:00", got {value!r}')
            parse_hhmm(start)
            parse_hhmm(end)
        return value

    @field_validator("daily_summary_at")
    @classmethod
    def _summary(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hhmm(value)
        return value

    def quiet_window(self) -> tuple[time, time] | None:
        if self.quiet_hours is None:
            return None
        start, _, end = self.quiet_hours.partition("-")
        return parse_hhmm(start), parse_hhmm(end)


class WhatsAppEntry(_Section):
    provider: Literal["evolution", "cloud"]
    instance: str | None = None
    api_url: str | None = None
    api_key: str | None = None
    webhook_token: str | None = None
    access_token: str | None = None
    app_secret: str | None = None
    verify_token: str | None = None
    phone_number_id: str | None = None

    @model_validator(mode="after")
    def _provider_fields(self) -> WhatsAppEntry:
        needed = {
            "evolution": ("instance", "api_url", "api_key", "webhook_token"),
            "cloud": ("phone_number_id", "access_token", "app_secret", "verify_token"),
        }[self.provider]
        missing = [name for name in needed if not getattr(self, name)]
        if missing:
            raise ValueError(f"a {self.provider} instance needs {', '.join(missing)}")
        return self

    @property
    def key(self) -> str:
        """The name webhooks use: Evolution instance name, or Cloud phone_number_id."""
        value = self.instance if self.provider == "evolution" else self.phone_number_id
        assert value is not None
        return value


class OwnerEntry(_Section):
    name: str = ""
    phone: str

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return checked_phone(value)


class ServiceEntry(_Section):
    name: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=50)
    duration_minutes: int = Field(ge=5, le=1440)
    price: Cents
    description: str | None = None
    #: Days after a completed appointment when the pet is due again (care cycles); absent:
    #: no cycle.
    return_after_days: int | None = Field(default=None, ge=1, le=3650)


class ResourceEntry(_Section):
    name: str = Field(min_length=1, max_length=200)
    services: list[str] = Field(min_length=1)
    capacity: int = Field(default=1, ge=1, le=100)


class ClosureEntry(_Section):
    date: date
    reason: str | None = None


def _decimal(value: Any) -> Decimal:
    """A price or rate written as a decimal string ("0.15") or an integer, never a float."""
    if isinstance(value, bool | float):
        raise ValueError(
            f'write it as a decimal string like "0.15", not {value!r}: floats lose cents'
        )
    if not isinstance(value, str | int):
        raise ValueError('expected a decimal string like "0.15"')
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f'expected a decimal string like "0.15", got {value!r}') from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"expected a non-negative amount, got {value!r}")
    return amount


Amount = Annotated[Decimal, BeforeValidator(_decimal)]


class ModelPriceEntry(_Section):
    """One model's USD prices; cached input defaults to the input price (never cheaper by
    accident), the others to 0."""

    name: str = Field(min_length=1, max_length=100)
    input_per_million: Amount | None = None
    cached_input_per_million: Amount | None = None
    output_per_million: Amount | None = None
    transcription_per_minute: Amount | None = None

    @model_validator(mode="after")
    def _some_price(self) -> ModelPriceEntry:
        given = (
            self.input_per_million,
            self.cached_input_per_million,
            self.output_per_million,
            self.transcription_per_minute,
        )
        if all(item is None for item in given):
            raise ValueError(
                "give at least one of input_per_million, cached_input_per_million, "
                "output_per_million, transcription_per_minute"
            )
        return self

    def price(self) -> ModelPrice:
        zero = Decimal(0)
        input_ = self.input_per_million or zero
        cached = self.cached_input_per_million
        return ModelPrice(
            input_per_million=input_,
            cached_input_per_million=input_ if cached is None else cached,
            output_per_million=self.output_per_million or zero,
            transcription_per_minute=self.transcription_per_minute or zero,
        )


class PricingSection(_Section):
    """`[pricing]`: reais per dollar and per-model prices laid over the built-in table."""

    usd_brl: Amount | None = None
    models: list[ModelPriceEntry] = []

    @field_validator("usd_brl")
    @classmethod
    def _rate(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value <= 0:
            raise ValueError("the exchange rate must be above zero")
        return value

    def prices(self) -> dict[str, ModelPrice]:
        return {entry.name: entry.price() for entry in self.models}


class LimitsSection(_Section):
    """`[limits]`: what the AI answers per contact and per organization (defaults in
    `models.organization.LIMIT_DEFAULTS`). Past a contact's per-minute limit the contact gets
    one notice and the rest waits, stored, for the window to reopen; past its daily limit the
    conversation goes to a person. Past the organization's turns per minute, turns wait.
    After `bot_loop_exchanges` exchanges in a row in which the contact answered our reply
    within seconds (another bot), the conversation goes to a person; 0 turns that off.

    `monthly_budget_brl` caps the AI's cost per calendar month (kept in centavos; absent or
    empty: no budget): at 80 % the owners are told, at 100 % customers' conversations get
    `over_budget` (a person takes over, or a fixed reply without the model)."""

    contact_messages_per_minute: int = Field(
        default=LIMIT_DEFAULTS["contact_messages_per_minute"], ge=1, le=1000
    )
    contact_messages_per_day: int = Field(
        default=LIMIT_DEFAULTS["contact_messages_per_day"], ge=1, le=100_000
    )
    org_turns_per_minute: int = Field(
        default=LIMIT_DEFAULTS["org_turns_per_minute"], ge=1, le=100_000
    )
    bot_loop_exchanges: int = Field(default=LIMIT_DEFAULTS["bot_loop_exchanges"], ge=0, le=10)
    monthly_budget_brl: BudgetCents = None
    over_budget: OverBudget = "hand_to_human"

    def stored(self) -> dict[str, Any]:
        """The `ai_settings` columns these keys are kept in."""
        return {
            ("monthly_budget_cents" if name == "monthly_budget_brl" else name): value
            for name, value in self.model_dump().items()
        }


class PrivacySection(_Section):
    """`[privacy]`: how long message contents, and media transcripts and extracted texts, are
    kept (days; absent: until the contact is forgotten). The scheduler erases older ones and
    keeps the rows' metadata, so the figures stay right."""

    message_retention_days: int | None = Field(default=None, ge=1, le=36_500)
    transcript_retention_days: int | None = Field(default=None, ge=1, le=36_500)
    #: `message.received` / `message.sent` webhook events carry the message's text.
    webhook_message_text: bool = False


class WebhookEntry(_Section):
    """`[[webhooks]]`: an endpoint that receives the listed events, signed with `secret`
    (`X-Zapvet-Signature`). Only `https://` URLs with public addresses, unless
    `allow_private_targets` (development and tests)."""

    #: Declared first: `url`'s check reads it.
    allow_private_targets: bool = False
    url: str
    secret: str = Field(min_length=16, max_length=200)
    events: list[str] = Field(min_length=1)
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        allow = bool(info.data.get("allow_private_targets", False))
        host, _ = parse(value, allow_private=allow)
        address = literal(host)
        if address is not None:
            check_addresses(host, [address], allow_private=allow)
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown event {', '.join(map(repr, unknown))}; known: {', '.join(EVENT_TYPES)}"
            )
        if len(set(value)) != len(value):
            raise ValueError("an event is listed twice")
        return value


class TemplateEntry(_Section):
    """`[[templates]]`: the approved Cloud API template for one proactive kind, outside the
    24-hour window; `parameters` names the body's `{{1}}`, `{{2}}`… in order."""

    kind: TemplateKind
    name: str
    language: str = "pt_BR"
    parameters: list[str] = []

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TEMPLATE_NAME.match(value):
            raise ValueError(
                "a template name as Meta approved it: lowercase letters, digits and "
                f'underscores (e.g. "lembrete_horario"), got {value!r}'
            )
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if not _LANGUAGE.match(value):
            raise ValueError(f'a template language code like "pt_BR", got {value!r}')
        return value

    @model_validator(mode="after")
    def _known_parameters(self) -> TemplateEntry:
        unknown = unknown_parameters(self.kind, self.parameters)
        if unknown:
            known = ", ".join(TEMPLATE_PARAMETERS[self.kind])
            raise ValueError(
                f"{self.kind} has no parameter {', '.join(map(repr, unknown))}; "
                f"it can fill: {known}"
            )
        return self


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class CareSection(_Section):
    """`[care]`: invitations to come back when a service with `return_after_days` is due.

    Off by default: a shop turns it on once its cycles are set. Invitations leave only
    within `hours` (local) on `weekdays`, at most `daily_cap` a day for the organization, and
    a pet is not invited about the same service again within `cooldown_days`."""

    enabled: bool = bool(CARE_DEFAULTS["care_enabled"])
    hours: str = "09:00-18:00"
    weekdays: list[Weekday] = ["mon", "tue", "wed", "thu", "fri", "sat"]
    daily_cap: int = Field(default=20, ge=0, le=10_000)
    cooldown_days: int = Field(default=30, ge=1, le=3650)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_interval(value)
        return value

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[Weekday]) -> list[Weekday]:
        if len(set(value)) != len(value):
            raise ValueError("a weekday is listed twice")
        return value

    def stored(self) -> dict[str, Any]:
        """The `ai_settings` columns these keys are kept in."""
        start, end = parse_interval(self.hours)
        return {
            "care_enabled": self.enabled,
            "care_hours_start": start,
            "care_hours_end": end,
            "care_weekdays": sum(1 << WEEKDAYS.index(day) for day in self.weekdays),
            "care_daily_cap": self.daily_cap,
            "care_cooldown_days": self.cooldown_days,
        }


class OrgSpec(_Section):
    """A whole organization file, validated."""

    organization: OrganizationSection
    ai: AISection = AISection()
    booking: BookingSection = BookingSection()
    aurora: AuroraSection = AuroraSection()
    whatsapp: list[WhatsAppEntry] = []
    owners: list[OwnerEntry] = []
    services: list[ServiceEntry] = Field(min_length=1)
    resources: list[ResourceEntry] = Field(min_length=1)
    hours: dict[Weekday, list[str]]
    closures: list[ClosureEntry] = []
    pricing: PricingSection = PricingSection()
    limits: LimitsSection = LimitsSection()
    privacy: PrivacySection = PrivacySection()

    templates: list[TemplateEntry] = []
    webhooks: list[WebhookEntry] = []

    care: CareSection = CareSection()

    def weekly_hours(self) -> dict[int, list[tuple[time, time]]]:
        """Weekday index (0 = Monday) → sorted opening intervals."""
        return {
            WEEKDAYS.index(day): sorted(parse_interval(item) for item in items)
            for day, items in self.hours.items()
        }


def _cross_checks(spec: OrgSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems no single field can see: duplicates, dangling names, overlapping hours."""
    problems: list[tuple[tuple[str | int, ...], str]] = []

    def duplicates(items: list[str], section: str, key: str) -> None:
        seen: set[str] = set()
        for index, item in enumerate(items):
            folded = item.casefold()
            if folded in seen:
                problems.append(((section, index, key), f"duplicate {key} {item!r}"))
            seen.add(folded)

    duplicates([s.name for s in spec.services], "services", "name")
    duplicates([r.name for r in spec.resources], "resources", "name")
    duplicates([o.phone for o in spec.owners], "owners", "phone")
    duplicates([f"{w.provider}:{w.key}" for w in spec.whatsapp], "whatsapp", "instance")
    duplicates([c.date.isoformat() for c in spec.closures], "closures", "date")
    duplicates([t.kind for t in spec.templates], "templates", "kind")
    duplicates([w.url for w in spec.webhooks], "webhooks", "url")
    for index, entry in enumerate(spec.pricing.models):
        if entry.name in {m.name for m in spec.pricing.models[:index]}:
            problems.append(
                (("pricing", "models", index, "name"), f"duplicate name {entry.name!r}")
            )

    known = {s.category.casefold() for s in spec.services} | {
        s.name.casefold() for s in spec.services
    }
    for index, resource in enumerate(spec.resources):
        for item in resource.services:
            if item.casefold() not in known:
                problems.append(
                    (
                        ("resources", index, "services"),
                        f"{item!r} is neither a service category nor a service name",
                    )
                )
    served = {
        service.name
        for service in spec.services
        for resource in spec.resources
        if {service.category.casefold(), service.name.casefold()}
        & {item.casefold() for item in resource.services}
    }
    for index, service in enumerate(spec.services):
        if service.name not in served:
            problems.append((("services", index, "category"), "no resource performs this service"))

    for day, items in spec.hours.items():
        try:
            intervals = sorted(parse_interval(item) for item in items)
        except ValueError as exc:
            problems.append((("hours", day), str(exc)))
            continue
        for (_, first_end), (second_start, _) in zip(intervals, intervals[1:], strict=False):
            if second_start < first_end:
                problems.append((("hours", day), "opening intervals overlap"))
    if not any(spec.hours.values()):
        problems.append((("hours",), "the business must open on at least one day"))
    return problems


def locate(text: str, loc: tuple[str | int, ...]) -> int | None:
    """The 1-based line of key path `loc` (e.g. ("services", 2, "price")) in TOML `text`.

    Falls back to the line of the enclosing table when the key itself is absent.
    """
    path = [part for part in loc if isinstance(part, str)]
    index = next((part for part in loc if isinstance(part, int)), None)
    if not path:
        return None
    table, key = path[0], path[1] if len(path) > 1 else None
    if len(path) > 1 and f"[[{path[0]}.{path[1]}]]" in text:  # e.g. [[pricing.models]]
        table, key = f"{path[0]}.{path[1]}", path[2] if len(path) > 2 else None
    header_line: int | None = None
    current: str | None = ""
    occurrence = -1
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line.startswith("[["):
            current = line.strip("[] ")
            if current == table:
                occurrence += 1
                if index is None or occurrence == index:
                    header_line = number
            continue
        if line.startswith("["):
            current = line.strip("[] ")
            if current == table:
                header_line = number
            continue
        name = line.split("=", 1)[0].strip().strip('"')
        if "=" not in line:
            continue
        in_table = current == table and (index is None or occurrence == index)
        if in_table and key is not None and name == key:
            return number
        if current == "" and name == table:
            return number
    return header_line


def _loc_text(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def parse_spec(text: str, path: Path | str = "<string>") -> OrgSpec:
    """Validate the TOML `text` of an organization file.

    Raises:
        OrgFileError: every problem found, with key paths and lines.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        line = int(found[1]) if found else None
        raise OrgFileError(path, [OrgFileProblem("", f"not valid TOML: {reason}", line)]) from None
    try:
        spec = OrgSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            elif error["type"] == "missing":
                message = "required key is missing"
            problems.append(OrgFileProblem(_loc_text(loc), message, locate(text, loc)))
        raise OrgFileError(path, problems) from None
    cross = _cross_checks(spec)
    if cross:
        raise OrgFileError(
            path, [OrgFileProblem(_loc_text(loc), msg, locate(text, loc)) for loc, msg in cross]
        )
    return spec


def load_spec(path: Path | str) -> OrgSpec:
    """Read and validate an organization file.

    Raises:
        OrgFileError: the file is missing, unreadable or invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OrgFileError(
            path, [OrgFileProblem("", f"cannot read the file: {exc.strerror}")]
        ) from None
    return parse_spec(text, path)
