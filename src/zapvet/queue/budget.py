"""The monthly AI budget as a worker process applies it, without a statement per turn.

The budget comes with the organization's configuration (checked by its version every turn,
so raising it applies at the next one). The month's spend is PostgreSQL's figure
(`analytics.costs.month_cost_cents` over `ai_interactions`), read again once it is
`SPEND_TTL` old or the configuration changed (prices, the budget): Redis holds none of it,
so nothing is reset by a restart. Between two reads turns keep spending, so a month may end
up to `SPEND_TTL` of turns past its budget. The owners' alerts are inserted once per level
and budget per process; PostgreSQL's dedupe keys make them once in all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.analytics.costs import month_cost_cents
from zapvet.models.config import OrgConfig
from zapvet.pricing import DEFAULT_TRANSCRIBE_MODEL
from zapvet.proactive.budget import WARNING, BudgetState, alert_budget, month_of

#: How long a process trusts the month's spend it read.
SPEND_TTL = timedelta(seconds=30)


@dataclass(frozen=True)
class _Spend:
    cents: int
    read_at: datetime
    version: int


@dataclass
class Budgets:
    """Per-process: each organization's spend this month, and the alerts already queued."""

    ttl: timedelta = SPEND_TTL
    #: The process's transcription model, at which audio without an `[ai]` one is priced.
    transcribe_model: str = DEFAULT_TRANSCRIBE_MODEL
    _spend: dict[tuple[int, str], _Spend] = field(default_factory=dict)
    _alerted: set[tuple[int, str, int, int, tuple[int, ...]]] = field(default_factory=set)
    #: Times the spend was read from PostgreSQL.
    reads: int = 0

    async def state(
        self, sessions: async_sessionmaker[AsyncSession], config: OrgConfig, now: datetime
    ) -> BudgetState | None:
        """Where the organization's month stands against its budget; None: no budget."""
        ai = config.ai
        if ai is None or ai.monthly_budget_cents is None:
            return None
        month, start, end = month_of(now, ZoneInfo(config.organization.timezone))
        key = (config.organization_id, month)
        cached = self._spend.get(key)
        if (
            cached is None
            or cached.version != config.version
            or not timedelta(0) <= now - cached.read_at < self.ttl
        ):
            async with sessions() as session:
                cents = await month_cost_cents(
                    session,
                    config.organization_id,
                    start,
                    end,
                    transcribe_model=self.transcribe_model,
                )
            self.reads += 1
            cached = _Spend(cents, now, config.version)
            self._spend[key] = cached
        return BudgetState(month, cached.cents, ai.monthly_budget_cents, ai.over_budget)

    async def alert(
        self,
        sessions: async_sessionmaker[AsyncSession],
        proactive: Callable[[int], None],
        config: OrgConfig,
        state: BudgetState,
        now: datetime,
    ) -> None:
        """Queue the owners' alert for `state`'s level (80 % or 100 %), once: `proactive`
        gets the ids of rows this call inserted."""
        if state.level < WARNING:
            return
        owners = tuple(owner.id for owner in config.owners if owner.id is not None)
        # An owner number added later is a new key: it hears of the level too.
        key = (config.organization_id, state.month, state.level, state.budget_cents, owners)
        if key in self._alerted:
            return
        ids: list[int] = []
        if owners:
            async with sessions() as session, session.begin():
                ids = await alert_budget(session, config.organization_id, list(owners), state, now)
        self._alerted.add(key)
        for proactive_id in ids:
            proactive(proactive_id)

    def forget(self) -> None:
        """Drop what this process knows (as a new process would start)."""
        self._spend.clear()
        self._alerted.clear()
