"""What the AI cost: Aurora's `ai_costs` and the analytics behind it equal SQL over the same
rows, priced by a table written here in SQL, and never count another organization's rows."""

from __future__ import annotations

import json
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from sqlalchemy import text
from sqlmodel import Session

from tests.conftest import SAO_PAULO, second_shop
from tests.fixtures_ai import seed_ai_usage
from zapvet.analytics import costs
from zapvet.graphs.aurora.graph import build_graph
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import Organization
from zapvet.money import format_brl
from zapvet.tools.context import AuroraContext
from zapvet.tools.deps import ToolDeps

pytestmark = pytest.mark.anyio
NOVEMBER = (date(2026, 11, 1), date(2026, 11, 30))

#: The cost in centavos per agent (and in total, agent NULL), with list prices in a VALUES
#: table, dated snapshots folded by a regular expression, audio at gpt-4o-mini-transcribe's
#: US$ 0.003 a minute, R$ 5.40 per dollar, rounded once by PostgreSQL (half away from zero).
DIRECT_SQL = r"""
WITH prices(model, input, cached, output) AS (
  VALUES ('gpt-4o-mini', 0.15, 0.075, 0.60), ('gpt-4o', 2.50, 1.25, 10.00)
)
SELECT i.ai_type, count(*), sum(i.input_tokens), sum(i.cached_input_tokens),
       sum(i.output_tokens), sum(i.images),
       round(100 * 5.40 * sum(
         ((i.input_tokens - i.cached_input_tokens) * coalesce(p.input, 0)
          + i.cached_input_tokens * coalesce(p.cached, 0)
          + i.output_tokens * coalesce(p.output, 0)) / 1000000
         + i.audio_seconds::numeric / 60 * 0.003))
  FROM ai_interactions i
  LEFT JOIN prices p ON p.model = regexp_replace(i.model, '-\d{4}-\d{2}-\d{2}$', '')
 WHERE i.organization_id = :org
   AND (i.created_at AT TIME ZONE 'America/Sao_Paulo')::date BETWEEN :start AND :end
 GROUP BY ROLLUP (i.ai_type)
"""


@pytest.fixture
def other_org(session: Session) -> Organization:
    """A second shop spending ten times more: none of it may reach the first's figures."""
    org = second_shop(session)
    seed_ai_usage(session, org, scale=10)
    return org


def direct(session: Session, org: Organization) -> dict[str | None, tuple[Any, ...]]:
    params = {"org": org.id, "start": NOVEMBER[0], "end": NOVEMBER[1]}
    rows = session.execute(text(DIRECT_SQL), params).all()
    return {agent: tuple(int(v) for v in values) for agent, *values in rows}


def ai_costs_call() -> list[AIMessage]:
    args = {"start_date": "2026-11-01", "end_date": "2026-11-30"}
    call = {"name": "ai_costs", "args": args, "id": "call-1", "type": "tool_call"}
    return [AIMessage("", tool_calls=[call]), AIMessage("Gastou isso.")]


async def test_auroras_ai_costs_equal_direct_sql(
    deps: ToolDeps,
    owner: AuroraContext,
    session: Session,
    petfeliz: Organization,
    other_org: Organization,
) -> None:
    seed_ai_usage(session, petfeliz)
    model = ScriptedChatModel(script=ai_costs_call())
    turn = await run_turn(build_graph(model, deps), owner, [HumanMessage("Quanto gastei de IA?")])
    (message,) = [m for m in turn.messages if isinstance(m, ToolMessage)]
    assert message.status == "success", message.content
    answer = json.loads(str(message.content))

    sql = direct(session, petfeliz)
    turns, sent, cached, received, images, cents = sql[None]
    assert (turns, sent, cached, received, images, cents) == (
        5, 13_301_000, 4_600_000, 2_650_100, 3, 2338
    )  # fmt: skip
    total = answer["total"]
    assert total["cost"] == format_brl(cents) == "R$ 23,38"
    assert (total["turns"], total["input_tokens"], total["cached_input_tokens"]) == (
        turns, sent, cached
    )  # fmt: skip
    assert (total["output_tokens"], total["images"]) == (received, images)
    assert total["cache_hit_share"] == "34,6%"  # 4,600,000 / 13,301,000
    assert total["audio_minutes"] == "10,50"
    for agent in ("client", "aurora"):
        a_turns, a_sent, a_cached, _, _, a_cents = sql[agent]
        shown = answer["by_agent"][agent]
        assert (shown["turns"], shown["input_tokens"], shown["cached_input_tokens"]) == (
            a_turns, a_sent, a_cached
        )  # fmt: skip
        assert shown["cost"] == format_brl(a_cents)
    assert answer["by_agent"]["client"]["cost"] == "R$ 17,30"
    assert answer["by_agent"]["aurora"]["cost"] == "R$ 6,08"  # 6,075 rounds half up
    assert answer["by_agent"]["aurora"]["cache_hit_share"] == "33,3%"
    assert answer["by_day"] == {
        "02/11": "R$ 3,24",  # 02:30 UTC on the 3rd is the 2nd in São Paulo
        "03/11": "R$ 13,12",
        "10/11": "R$ 6,08",
        "11/11": "R$ 0,00",
        "30/11": "R$ 0,94",
    }
    assert answer["unpriced_models"] == ["mystery-model"]
    assert answer["usd_brl"] == "5,40"


async def test_the_month_cost_for_a_budget_is_the_same_figure(
    deps: ToolDeps, session: Session, petfeliz: Organization, other_org: Organization
) -> None:
    seed_ai_usage(session, petfeliz)
    assert petfeliz.id is not None and other_org.id is not None
    start = datetime.combine(NOVEMBER[0], time(0), tzinfo=SAO_PAULO)
    end = datetime.combine(date(2026, 12, 1), time(0), tzinfo=SAO_PAULO)
    async with deps.sessions() as async_session:
        cents = await costs.month_cost_cents(async_session, petfeliz.id, start, end)
        report = await costs.ai_costs(async_session, petfeliz.id, SAO_PAULO, *NOVEMBER)
        other = await costs.month_cost_cents(async_session, other_org.id, start, end)
    assert cents == report.total.cost_cents == direct(session, petfeliz)[None][-1] == 2338
    assert other == direct(session, other_org)[None][-1] == 23_377  # 10 × R$ 23,3766, rounded once


async def test_the_month_shows_how_much_of_its_budget_it_used(
    deps: ToolDeps,
    owner: AuroraContext,
    session: Session,
    petfeliz: Organization,
) -> None:
    seed_ai_usage(session, petfeliz)
    session.execute(text("UPDATE ai_settings SET monthly_budget_cents = 5000"))
    session.commit()
    model = ScriptedChatModel(script=ai_costs_call())
    turn = await run_turn(build_graph(model, deps), owner, [HumanMessage("Quanto gastei de IA?")])
    (message,) = [m for m in turn.messages if isinstance(m, ToolMessage)]
    answer = json.loads(str(message.content))
    assert answer["monthly_budget"] == "R$ 50,00"
    assert answer["budget_used"] == "46,8%"  # R$ 23,38 of R$ 50,00
    assert petfeliz.id is not None
    async with deps.sessions() as async_session:  # a part of a month is no month's share
        part = await costs.ai_costs(
            async_session, petfeliz.id, SAO_PAULO, date(2026, 11, 2), date(2026, 11, 30)
        )
    assert part.monthly_budget_cents == 5000 and part.budget_share is None


async def test_an_organizations_own_prices_and_rate_are_used(
    deps: ToolDeps, session: Session, petfeliz: Organization
) -> None:
    from zapvet.models import AISettings
    from zapvet.pricing import ModelPrice, stored_pricing

    seed_ai_usage(session, petfeliz)
    settings = session.get(AISettings, petfeliz.id)
    assert settings is not None and petfeliz.id is not None
    mystery = ModelPrice(Decimal(1000), Decimal(1000), Decimal(1000))
    settings.pricing = stored_pricing(Decimal("5.00"), {"mystery-model": mystery})
    session.commit()
    async with deps.sessions() as async_session:
        report = await costs.ai_costs(async_session, petfeliz.id, SAO_PAULO, *NOVEMBER)
    # US$ 4.329 at the defaults, plus mystery-model's 1,100 tokens at US$ 1,000 a million
    assert report.total.cost_brl == (Decimal("4.329") + Decimal("1.1")) * 5
    assert report.total.cost_cents == 2715 and report.unpriced_models == set()
    assert report.per_model["gpt-4o-mini"].turns == 3  # the dated snapshot folded in
