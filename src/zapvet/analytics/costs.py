"""What an organization's AI cost, from its `ai_interactions` rows and its price table.

Every row counts, successful or not: a failed turn's tokens are billed too. Rows are summed
by SQL per (agent, local day, model); each group is priced exactly (`zapvet.pricing`), and
each figure shown (total, per agent, per day) is its exact sum rounded half up to centavos
once. Audio is priced at the organization's transcription model (`[ai] transcribe_model`,
else the process default handed in). A model the table does not know is priced at zero and
named in `unpriced_models`, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import Numeric, cast, func
from sqlalchemy import select as sa_select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet import db
from zapvet.analytics.figures import period
from zapvet.models import AIInteraction, AISettings
from zapvet.pricing import DEFAULT_TRANSCRIBE_MODEL, PriceTable, Usage, share, to_cents


@dataclass
class CostFigures:
    """Usage and cost of some turns; `cost_brl` is exact, `cost_cents` rounded once."""

    turns: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    audio_seconds: Decimal = Decimal(0)
    images: int = 0
    cost_brl: Decimal = Decimal(0)

    @property
    def cost_cents(self) -> int:
        return to_cents(self.cost_brl)

    @property
    def audio_minutes(self) -> Decimal:
        return (self.audio_seconds / 60).quantize(Decimal("0.01"))

    @property
    def cache_hit_share(self) -> Decimal:
        """Cached prompt tokens over all prompt tokens, to four places."""
        return share(self.cached_input_tokens, self.input_tokens)

    def add(self, other: CostFigures) -> None:
        self.turns += other.turns
        self.input_tokens += other.input_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.output_tokens += other.output_tokens
        self.audio_seconds += other.audio_seconds
        self.images += other.images
        self.cost_brl += other.cost_brl


@dataclass
class CostReport:
    """An organization's AI usage and cost over a period, split by agent and by local day."""

    start: date
    end: date
    usd_brl: Decimal
    total: CostFigures = field(default_factory=CostFigures)
    per_agent: dict[str, CostFigures] = field(default_factory=dict)
    per_day: dict[date, CostFigures] = field(default_factory=dict)
    per_model: dict[str, CostFigures] = field(default_factory=dict)
    unpriced_models: set[str] = field(default_factory=set)
    #: `[limits] monthly_budget_brl` in centavos (None: no budget).
    monthly_budget_cents: int | None = None

    @property
    def budget_share(self) -> Decimal | None:
        """How much of the monthly budget the period's cost is, for a period inside one
        calendar month starting on its 1st (None otherwise, or without a budget)."""
        budget = self.monthly_budget_cents
        one_month = self.start.day == 1 and (self.start.year, self.start.month) == (
            self.end.year,
            self.end.month,
        )
        if not budget or not one_month:
            return None
        return Decimal(self.total.cost_cents) / Decimal(budget)


async def price_table(
    session: AsyncSession, organization_id: int, transcribe_model: str = DEFAULT_TRANSCRIBE_MODEL
) -> tuple[PriceTable, str]:
    """The organization's price table and the transcription model its audio is priced at."""
    settings = await session.get(AISettings, organization_id)
    table = PriceTable().overridden(settings.pricing if settings else None)
    return table, (settings.transcribe_model if settings else None) or transcribe_model


async def _groups(
    session: AsyncSession, organization_id: int, zone: ZoneInfo, bounds: tuple[datetime, datetime]
) -> list[tuple[str, date, str | None, CostFigures]]:
    created = col(AIInteraction.created_at)
    local_day = func.date(func.timezone(zone.key, created))
    rows = await db.rows(
        session,
        sa_select(
            col(AIInteraction.ai_type),
            local_day,
            col(AIInteraction.model),
            func.count(),
            func.coalesce(func.sum(col(AIInteraction.input_tokens)), 0),
            func.coalesce(func.sum(col(AIInteraction.cached_input_tokens)), 0),
            func.coalesce(func.sum(col(AIInteraction.output_tokens)), 0),
            # numeric, not float: the seconds summed exactly as stored
            func.coalesce(func.sum(cast(col(AIInteraction.audio_seconds), Numeric)), 0),
            func.coalesce(func.sum(col(AIInteraction.images)), 0),
        )
        .where(
            col(AIInteraction.organization_id) == organization_id,
            created >= bounds[0],
            created < bounds[1],
        )
        .group_by(col(AIInteraction.ai_type), local_day, col(AIInteraction.model)),
    )
    return [
        (
            agent,
            day,
            model,
            CostFigures(
                turns=int(turns),
                input_tokens=int(sent),
                cached_input_tokens=int(cached),
                output_tokens=int(received),
                audio_seconds=Decimal(str(audio)),
                images=int(images),
            ),
        )
        for agent, day, model, turns, sent, cached, received, audio, images in rows
    ]


async def ai_costs(
    session: AsyncSession,
    organization_id: int,
    zone: ZoneInfo,
    start: date,
    end: date,
    *,
    transcribe_model: str = DEFAULT_TRANSCRIBE_MODEL,
) -> CostReport:
    """Usage and cost of the organization's turns on local dates `start`..`end` (inclusive)."""
    table, audio_model = await price_table(session, organization_id, transcribe_model)
    settings = await session.get(AISettings, organization_id)
    report = CostReport(
        start=start,
        end=end,
        usd_brl=table.usd_brl,
        monthly_budget_cents=settings.monthly_budget_cents if settings else None,
    )
    for agent, day, model, figures in await _groups(
        session, organization_id, zone, period(zone, start, end)
    ):
        usage = Usage(
            figures.input_tokens,
            figures.cached_input_tokens,
            figures.output_tokens,
            figures.audio_seconds,
        )
        figures.cost_brl = table.cost_brl(model, usage, audio_model)
        report.unpriced_models |= table.unpriced(model, usage, audio_model)
        report.total.add(figures)
        report.per_agent.setdefault(agent, CostFigures()).add(figures)
        report.per_day.setdefault(day, CostFigures()).add(figures)
        report.per_model.setdefault(table.lookup(model) or model or "unknown", CostFigures()).add(
            figures
        )
    report.per_day = dict(sorted(report.per_day.items()))
    return report


async def month_cost_cents(
    session: AsyncSession,
    organization_id: int,
    month_start: datetime,
    month_end: datetime,
    *,
    transcribe_model: str = DEFAULT_TRANSCRIBE_MODEL,
) -> int:
    """The organization's AI cost in centavos for turns in [month_start, month_end) (aware
    datetimes: the caller picks the month's bounds in the organization's timezone). What a
    monthly budget is checked against; unpriced models count as zero (see `ai_costs`)."""
    table, audio_model = await price_table(session, organization_id, transcribe_model)
    exact = Decimal(0)
    for _, _, model, figures in await _groups(
        session, organization_id, ZoneInfo("UTC"), (month_start, month_end)
    ):
        usage = Usage(
            figures.input_tokens,
            figures.cached_input_tokens,
            figures.output_tokens,
            figures.audio_seconds,
        )
        exact += table.cost_brl(model, usage, audio_model)
    return to_cents(exact)


def month_bounds(year: int, month: int) -> tuple[date, date]:
    """First and last local dates of a month."""
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    return first, date.fromordinal(following.toordinal() - 1)
