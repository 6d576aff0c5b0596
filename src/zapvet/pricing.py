"""What AI usage costs: a price table per model (USD list prices) turned into reais.

Prices are `Decimal`s read from strings, never floats. A cost is computed exactly (Decimal,
no rounding) and rounded once, half up, to integer centavos where it is shown or compared
with a budget (`to_cents`). A figure made of parts (per agent, per day) rounds its own exact
sum, so the rounded parts may differ from the rounded total by under one centavo each.

Input tokens as recorded include the cached ones (OpenAI's `prompt_tokens` does): the cached
share is priced at the cached rate and the rest at the input rate. Images are billed by OpenAI
as input tokens, already counted there, so they add nothing of their own. Audio is priced per
minute at the transcription model's rate.

An organization's table is this module's default, with the organization file's `[pricing]`
(stored as JSON in `ai_settings.pricing`) laid over it model by model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

MILLION = Decimal(1_000_000)
PRICE_FIELDS = (
    "input_per_million",
    "cached_input_per_million",
    "output_per_million",
    "transcription_per_minute",
)


@dataclass(frozen=True)
class ModelPrice:
    """One model's USD list prices: per million tokens, and per minute of audio transcribed."""

    input_per_million: Decimal = Decimal(0)
    cached_input_per_million: Decimal = Decimal(0)
    output_per_million: Decimal = Decimal(0)
    transcription_per_minute: Decimal = Decimal(0)

    def as_json(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in PRICE_FIELDS}


def _chat(input_: str, cached: str, output: str) -> ModelPrice:
    return ModelPrice(Decimal(input_), Decimal(cached), Decimal(output))


def _audio(per_minute: str) -> ModelPrice:
    return ModelPrice(transcription_per_minute=Decimal(per_minute))


#: OpenAI's list prices in USD, standard tier, from https://platform.openai.com/docs/pricing
#: as this table was written (check them again when they matter): per million input / cached
#: input / output tokens, and per minute of audio for the transcription models (OpenAI's own
#: per-minute estimate for gpt-4o-*-transcribe). Not what a given account pays (discounts,
#: batch, taxes): an organization file's `[pricing]` overrides any of them.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o-mini": _chat("0.15", "0.075", "0.60"),
    "gpt-4o": _chat("2.50", "1.25", "10.00"),
    "gpt-4.1": _chat("2.00", "0.50", "8.00"),
    "gpt-4.1-mini": _chat("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": _chat("0.10", "0.025", "0.40"),
    "gpt-4o-mini-transcribe": _audio("0.003"),
    "gpt-4o-transcribe": _audio("0.006"),
    "whisper-1": _audio("0.006"),
}
#: The transcription model when neither the organization nor the process names one
#: (ZAPVET_TRANSCRIBE_MODEL's default).
DEFAULT_TRANSCRIBE_MODEL = "gpt-4o-mini-transcribe"
#: Reais per US dollar unless the organization file says otherwise (`[pricing] usd_brl`).
DEFAULT_USD_BRL = Decimal("5.40")

#: A dated snapshot ("gpt-4o-mini-2024-07-18") is priced as its model.
_SNAPSHOT = re.compile(r"^(?P<base>.+)-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Usage:
    """What some AI interactions consumed."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    audio_seconds: Decimal = Decimal(0)


@dataclass(frozen=True)
class PriceTable:
    """The prices one organization's costs are computed with."""

    usd_brl: Decimal = DEFAULT_USD_BRL
    models: dict[str, ModelPrice] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    def lookup(self, model: str | None) -> str | None:
        """The table's name for `model` (itself, or the model of a dated snapshot), or None."""
        if model is None:
            return None
        if model in self.models:
            return model
        snapshot = _SNAPSHOT.match(model)
        if snapshot and snapshot["base"] in self.models:
            return snapshot["base"]
        return None

    def price(self, model: str | None) -> ModelPrice | None:
        name = self.lookup(model)
        return None if name is None else self.models[name]

    def cost_brl(self, chat_model: str | None, usage: Usage, audio_model: str | None) -> Decimal:
        """Exact cost in reais of `usage`: tokens at `chat_model`'s prices, audio at
        `audio_model`'s. A model the table does not know costs 0 here: callers flag it with
        `unpriced(...)`, they never hide it."""
        chat = self.price(chat_model) or ModelPrice()
        audio = self.price(audio_model) or ModelPrice()
        with localcontext() as exact:
            exact.prec = 60  # far beyond any figure here: the arithmetic is exact
            uncached = max(usage.input_tokens - usage.cached_input_tokens, 0)
            usd = (
                uncached * chat.input_per_million
                + usage.cached_input_tokens * chat.cached_input_per_million
                + usage.output_tokens * chat.output_per_million
            ) / MILLION + usage.audio_seconds / 60 * audio.transcription_per_minute
            return usd * self.usd_brl

    def unpriced(self, chat_model: str | None, usage: Usage, audio_model: str | None) -> set[str]:
        """The models `usage` was priced at zero for because the table does not know them."""
        missing: set[str] = set()
        tokens = usage.input_tokens or usage.output_tokens or usage.cached_input_tokens
        if tokens and self.price(chat_model) is None:
            missing.add(chat_model or "unknown")
        if usage.audio_seconds and self.price(audio_model) is None:
            missing.add(audio_model or "unknown")
        return missing

    def overridden(self, stored: dict[str, Any] | None) -> PriceTable:
        """This table with an organization's stored `[pricing]` (see `as_json`) laid over it."""
        if not stored:
            return self
        models = dict(self.models)
        for name, prices in (stored.get("models") or {}).items():
            models[name] = ModelPrice(**{k: Decimal(str(prices[k])) for k in PRICE_FIELDS})
        rate = stored.get("usd_brl")
        return PriceTable(Decimal(str(rate)) if rate is not None else self.usd_brl, models)


def stored_pricing(usd_brl: Decimal | None, models: dict[str, ModelPrice]) -> dict[str, Any] | None:
    """The JSON `ai_settings.pricing` keeps for an organization file's `[pricing]` (decimal
    strings, so nothing is lost), or None when the file has none."""
    if usd_brl is None and not models:
        return None
    return {
        "usd_brl": None if usd_brl is None else str(usd_brl),
        "models": {name: price.as_json() for name, price in sorted(models.items())},
    }


def to_cents(reais: Decimal) -> int:
    """Integer centavos of an exact amount in reais, rounded half up."""
    return int((reais * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def share(part: int, whole: int) -> Decimal:
    """`part / whole` as a fraction rounded half up to four places (0 when whole is 0)."""
    if not whole:
        return Decimal(0)
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
