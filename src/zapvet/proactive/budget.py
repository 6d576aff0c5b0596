"""The monthly AI budget: the month it is counted in, how far it is spent, the owners' alerts.

`[limits] monthly_budget_brl` caps what the AI may cost in a calendar month of the
organization's timezone. At 80 % the owners are told; at 100 % customers' conversations get
`over_budget` instead of the model, and the owners are told again. Each alert goes out once:
its `dedupe_key` names the month, the level and the budget, and the unique index on
`(organization_id, dedupe_key)` makes two workers, a retried job or a restarted process
insert it once. A budget raised within the month is a new budget: reaching 80 % or 100 %
of it is told again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.models.organization import OverBudget
from zapvet.proactive.planning import BUDGET, insert_rows
from zapvet.proactive.wording import budget_text, budget_values

#: The levels the owners hear about, in percent of the budget.
WARNING, REACHED = 80, 100


def month_of(now: datetime, zone: ZoneInfo) -> tuple[str, datetime, datetime]:
    """The local calendar month `now` falls in: "YYYY-MM" and its bounds [start, end)."""
    local = now.astimezone(zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    following = datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=zone)
    return f"{local.year:04d}-{local.month:02d}", start, following


@dataclass(frozen=True)
class BudgetState:
    """An organization's month against its budget, as a turn sees it."""

    month: str
    spent_cents: int
    budget_cents: int
    behaviour: OverBudget

    @property
    def level(self) -> int:
        """100 at or past the budget, 80 at or past 80 % of it, 0 below."""
        if self.spent_cents >= self.budget_cents:
            return REACHED
        if self.spent_cents * 100 >= self.budget_cents * WARNING:
            return WARNING
        return 0


def budget_key(state: BudgetState, owner_id: int) -> str:
    """One alert per owner number, month, level and budget."""
    return f"budget:{state.month}:{state.level}:{state.budget_cents}:{owner_id}"


async def alert_budget(
    session: AsyncSession,
    organization_id: int,
    owner_ids: list[int],
    state: BudgetState,
    now: datetime,
) -> list[int]:
    """Queue the owners' alert for `state`'s level (80 % or 100 %); the new rows' ids (none
    when each was queued already, by this process or another)."""
    content = budget_text(state.level, state.spent_cents, state.budget_cents, state.behaviour)
    return await insert_rows(
        session,
        [
            {
                "organization_id": organization_id,
                "owner_number_id": owner_id,
                "message_type": BUDGET,
                "content": content,
                "template_values": budget_values(state.spent_cents, state.budget_cents),
                "scheduled_for": now,
                "status": "pending",
                "dedupe_key": budget_key(state, owner_id),
            }
            for owner_id in owner_ids
        ],
    )
