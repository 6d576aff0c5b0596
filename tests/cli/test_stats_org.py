"""`zapvet stats --org SLUG`: a month's AI turns, tokens and cost, as a table and as JSON."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlmodel import Session

from tests.conftest import SAO_PAULO, second_shop, start_conversation, zapvet
from tests.fixtures_ai import seed_ai_usage
from zapvet.embedded import ServiceUrls
from zapvet.models import Message, Organization


def _env(database_url: str, services: ServiceUrls) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "REDIS_URL": services.redis_url}


def test_stats_org_json_has_the_months_figures(
    session: Session, petfeliz: Organization, database_url: str, services: ServiceUrls
) -> None:
    seed_ai_usage(session, petfeliz)
    seed_ai_usage(session, second_shop(session), scale=10)
    result = zapvet(
        "stats", "--org", "petfeliz", "--month", "2026-11", "--json",
        env=_env(database_url, services),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["organization"] == "petfeliz" and figures["month"] == "2026-11"
    assert (figures["start"], figures["end"]) == ("2026-11-01", "2026-11-30")
    assert figures["turns"] == 5 and figures["cost_cents"] == 2338
    assert figures["input_tokens"] == 13_301_000 and figures["cached_input_tokens"] == 4_600_000
    assert figures["output_tokens"] == 2_650_100 and figures["cache_hit_share"] == 0.3458
    assert figures["audio_minutes"] == 10.5 and figures["images"] == 3
    assert {a: f["cost_cents"] for a, f in figures["per_agent"].items()} == {
        "aurora": 608,
        "client": 1730,
    }
    assert {d: f["cost_cents"] for d, f in figures["per_day"].items()} == {
        "2026-11-02": 324,
        "2026-11-03": 1312,
        "2026-11-10": 608,
        "2026-11-11": 0,
        "2026-11-30": 94,
    }
    assert figures["per_day"]["2026-11-03"]["audio_minutes"] == 10.0
    assert figures["unpriced_models"] == ["mystery-model"]
    assert figures["usd_brl"] == "5.40"
    assert figures["monthly_budget_cents"] is None and figures["budget_used_share"] is None


def test_stats_org_shows_the_share_of_the_monthly_budget_used(
    session: Session, petfeliz: Organization, database_url: str, services: ServiceUrls
) -> None:
    seed_ai_usage(session, petfeliz)
    session.execute(text("UPDATE ai_settings SET monthly_budget_cents = 5000"))
    session.commit()
    env = _env(database_url, services)
    result = zapvet("stats", "--org", "petfeliz", "--month", "2026-11", "--json", env=env)
    figures = json.loads(result.stdout)
    assert figures["monthly_budget_cents"] == 5000
    assert figures["budget_used_share"] == 0.4676  # R$ 23,38 of R$ 50,00
    table = zapvet("stats", "--org", "petfeliz", "--month", "2026-11", env=env)
    assert "monthly budget R$ 50,00 · 46,8% used" in table.stdout.splitlines()


def test_stats_org_prints_a_table_and_flags_what_has_no_price(
    session: Session, petfeliz: Organization, database_url: str, services: ServiceUrls
) -> None:
    seed_ai_usage(session, petfeliz)
    result = zapvet(
        "stats", "--org", "petfeliz", "--month", "2026-11", env=_env(database_url, services)
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "petfeliz · 2026-11 (01/11 a 30/11) · US$ 1 = R$ 5,40"
    assert lines[1].split() == [
        "turns", "input", "cached", "cache", "%", "output", "audio", "min", "images", "cost"
    ]  # fmt: skip
    assert lines[2].split() == [
        "total", "5", "13301000", "4600000", "34,6%", "2650100", "10.50", "3", "R$", "23,38"
    ]  # fmt: skip
    agents = {line.split()[0]: line.split()[-1] for line in lines[4:6]}
    assert lines[3] == "by agent" and agents == {"aurora": "6,08", "client": "17,30"}
    assert lines[6] == "by day"
    assert [line.split()[0] for line in lines[7:12]] == [
        "02/11",
        "03/11",
        "10/11",
        "11/11",
        "30/11",
    ]
    assert lines[-1] == "sem preço (priced at R$ 0,00, add them to [pricing]): mystery-model"


def test_stats_org_defaults_to_this_month_in_the_organizations_timezone(
    petfeliz: Organization, database_url: str, services: ServiceUrls
) -> None:
    result = zapvet("stats", "--org", "petfeliz", "--json", env=_env(database_url, services))
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["month"] == f"{datetime.now(SAO_PAULO):%Y-%m}"
    assert figures["turns"] == 0 and figures["per_day"] == {} and figures["cost_cents"] == 0
    text = zapvet("stats", "--org", "petfeliz", env=_env(database_url, services))
    assert "  (no AI turns this month)" in text.stdout.splitlines()


def test_stats_org_refuses_an_unknown_slug_and_a_bad_month(
    petfeliz: Organization, database_url: str, services: ServiceUrls
) -> None:
    env = _env(database_url, services)
    unknown = zapvet("stats", "--org", "nada", env=env)
    assert unknown.exit_code == 1
    assert "error: no organization with slug 'nada'" in unknown.stderr
    for month in ("2026-13", "11/2026", "2026-1"):
        bad = zapvet("stats", "--org", "petfeliz", "--month", month, env=env)
        assert bad.exit_code == 2, month
        assert f"error: expected a month like 2026-11, got '{month}'" in bad.stderr
    alone = zapvet("stats", "--month", "2026-11", env=env)
    assert alone.exit_code == 2 and "error: --month needs --org" in alone.stderr


def test_stats_help_names_the_org_options() -> None:
    result = zapvet("stats", "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--org" in result.stdout and "--month" in result.stdout and "YYYY-MM" in result.stdout


def test_stats_org_counts_the_months_template_errors_with_the_last_one(
    session: Session, petfeliz: Organization, database_url: str, services: ServiceUrls
) -> None:
    chat = start_conversation(session, petfeliz, "5511977776666")
    for day, code in ((3, 132001), (20, 132000), (40, 132000)):  # the 40th: December
        session.add(
            Message(
                organization_id=chat.organization_id,
                conversation_id=chat.conversation_id,
                direction="outgoing",
                status="failed",
                error=f"(#{code}) refused | code {code}",
                message_at=datetime(2026, 11, 1, 12, tzinfo=SAO_PAULO) + timedelta(days=day),
                updated_at=datetime(2026, 11, 1, 12, tzinfo=SAO_PAULO) + timedelta(days=day),
                meta={"template_error": code, "template": {"name": "lembrete_horario"}},
            )
        )
    session.commit()
    env = _env(database_url, services)
    result = zapvet("stats", "--org", "petfeliz", "--month", "2026-11", "--json", env=env)
    assert result.exit_code == 0, result.output
    failures = json.loads(result.stdout)["template_failures"]
    assert failures["count"] == 2 and failures["last_error"] == "(#132000) refused | code 132000"
    table = zapvet("stats", "--org", "petfeliz", "--month", "2026-11", env=env)
    assert "template errors (Cloud API): 2 · last: (#132000) refused" in table.stdout
