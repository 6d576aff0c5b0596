"""Aurora's figures equal direct SQL over the same rows, and never cross organizations."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text
from sqlmodel import Session

from tests.conftest import SAO_PAULO, second_shop
from tests.fixtures_day import seed_day
from zapvet import db
from zapvet.analytics import figures
from zapvet.models import Organization
from zapvet.money import format_brl

pytestmark = pytest.mark.anyio
DAY = date(2026, 11, 25)

DIRECT_SQL = """
SELECT count(DISTINCT contact_id) FILTER (WHERE status = 'completed'),
       coalesce(sum(price_cents) FILTER (WHERE status = 'completed'), 0),
       count(*) FILTER (WHERE status = 'no_show'),
       count(*) FILTER (WHERE status = 'cancelled')
  FROM appointments
 WHERE organization_id = :org
   AND (starts_at AT TIME ZONE 'America/Sao_Paulo')::date = :day
"""
PER_CATEGORY_SQL = """
SELECT s.category, count(*) FROM appointments a JOIN services s ON s.id = a.service_id
 WHERE a.organization_id = :org AND a.status = 'completed'
   AND (a.starts_at AT TIME ZONE 'America/Sao_Paulo')::date = :day
 GROUP BY s.category
"""


@pytest.fixture
def other_org(session: Session) -> Organization:
    """A second shop with its own busy day: its rows must never leak into the first's figures."""
    org = second_shop(session)
    seed_day(session, org)
    return org


async def test_today_summary_equals_direct_sql(
    session: Session, petfeliz: Organization, other_org: Organization, database_url: str
) -> None:
    seed_day(session, petfeliz)
    assert petfeliz.id is not None
    engine = db.build_async_engine(database_url, pool_size=1)
    async with db.async_session_maker(engine)() as async_session:
        summary = await figures.business_summary(async_session, petfeliz.id, SAO_PAULO, DAY, DAY)
    await engine.dispose()

    params = {"org": petfeliz.id, "day": DAY}
    clients, revenue, no_shows, cancellations = session.execute(text(DIRECT_SQL), params).one()
    per_category = dict(session.execute(text(PER_CATEGORY_SQL), params).all())  # type: ignore[arg-type]

    assert (summary.clients_served, summary.revenue_cents) == (clients, revenue) == (12, 85000)
    assert (summary.no_shows, summary.cancellations) == (no_shows, cancellations) == (1, 1)
    assert summary.per_category() == per_category == {"banho": 8, "consulta": 3, "tosa": 1}
    assert summary.completed == 12 and summary.still_scheduled == 1
    assert format_brl(summary.revenue_cents) == "R$ 850,00"
    assert format_brl(summary.average_ticket_cents) == "R$ 70,83"


def test_average_ticket_rounds_half_up() -> None:
    assert figures.average_cents(85000, 12) == 7083  # 7083.33
    assert figures.average_cents(1001, 2) == 501  # 500.5
    assert figures.average_cents(0, 0) == 0
