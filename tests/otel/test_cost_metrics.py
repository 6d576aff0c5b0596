"""`GET /metrics`' AI tokens and cost per organization: equal to the rows, labels bounded."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlmodel import Session

from tests.conftest import second_shop
from tests.fixtures_ai import seed_ai_usage
from zapvet import db
from zapvet.embedded import ServiceUrls
from zapvet.models import Organization
from zapvet.otel.exposition import render
from zapvet.pricing import DEFAULT_PRICES

pytestmark = pytest.mark.anyio
Scrape = Callable[[], Awaitable[list[Sample]]]


@pytest.fixture
async def scrape(database_url: str, services: ServiceUrls) -> AsyncIterator[Scrape]:
    """Render `GET /metrics`' text for this test's database; the zapvet_ai_* counters."""
    engine = db.build_async_engine(database_url, pool_size=1)
    client = aioredis.Redis.from_url(services.redis_url)
    namespace = f"test-{uuid.uuid4().hex}"

    async def read() -> list[Sample]:
        exposition = await render(db.async_session_maker(engine), client, namespace)
        return [
            sample
            for family in text_string_to_metric_families(exposition.decode())
            if family.name.startswith("zapvet_ai_")
            for sample in family.samples
            if sample.name.endswith("_total")
        ]

    yield read
    await client.aclose()
    await engine.dispose()


def value(samples: list[Sample], name: str, **labels: str) -> float:
    (found,) = [s.value for s in samples if s.name == name and s.labels == labels]
    return found


async def test_tokens_and_cost_per_organization_equal_the_rows(
    scrape: Scrape, session: Session, petfeliz: Organization
) -> None:
    seed_ai_usage(session, petfeliz)
    seed_ai_usage(session, second_shop(session), scale=10)
    samples = await scrape()

    cost = "zapvet_ai_cost_brl_total"
    # every row, all months: US$ 9.9225 of gpt-4o-mini tokens, 1.125 of gpt-4o, 10.5 minutes
    # of gpt-4o-mini-transcribe at 0.003, and mystery-model unpriced: × R$ 5.40
    assert value(samples, cost, organization="petfeliz", model="gpt-4o-mini") == pytest.approx(
        53.5815, abs=1e-9
    )
    assert value(samples, cost, organization="petfeliz", model="gpt-4o") == pytest.approx(6.075)
    audio = value(samples, cost, organization="petfeliz", model="gpt-4o-mini-transcribe")
    assert audio == pytest.approx(0.1701)
    assert value(samples, cost, organization="petfeliz", model="other") == 0
    assert value(samples, cost, organization="outra", model="gpt-4o") == pytest.approx(60.75)

    tokens = "zapvet_ai_tokens_total"
    mini = {"organization": "petfeliz", "model": "gpt-4o-mini"}
    assert value(samples, tokens, **mini, type="input") == 22_000_000  # the snapshot folded in
    assert value(samples, tokens, **mini, type="cached") == 4_500_000
    assert value(samples, tokens, **mini, type="output") == 11_600_000
    assert value(samples, tokens, organization="petfeliz", model="other", type="input") == 1_000
    assert value(samples, tokens, organization="outra", model="gpt-4o", type="input") == 3_000_000


async def test_labels_are_known_organizations_and_priced_models_only(
    scrape: Scrape, session: Session, petfeliz: Organization
) -> None:
    seed_ai_usage(session, petfeliz)
    samples = await scrape()
    assert samples, "no AI samples exposed"
    allowed_models = set(DEFAULT_PRICES) | {"gpt-4o-mini", "other"}
    for sample in samples:
        assert sample.labels["organization"] == "petfeliz"
        assert sample.labels["model"] in allowed_models, sample
    assert {s.labels["model"] for s in samples} == {
        "gpt-4o-mini", "gpt-4o", "gpt-4o-mini-transcribe", "other"
    }  # fmt: skip
