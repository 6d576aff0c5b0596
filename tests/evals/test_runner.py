"""The scenario runner catches what is wrong, and the report computes pass^k."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, zapvet
from zapvet.embedded import ServiceUrls
from zapvet.evals.report import render, summarise
from zapvet.evals.runner import ScenarioRun, run_scenario
from zapvet.evals.scenario import ScenarioError, load_scenario
from zapvet.testing.openai_server import FakeOpenAIServer, Reply

REX = REPO / "scenarios" / "client" / "01-rex-booking.yaml"
pytestmark = pytest.mark.anyio


def _variant(tmp_path: Path, change: dict[str, object]) -> Path:
    """The Rex scenario with top-level keys replaced, written next to a copy of its org."""
    data = yaml.safe_load(REX.read_text())
    data.update(change)
    data["org"] = str(REPO / "examples" / "petfeliz.toml")
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _turn3_say(text: str) -> dict[str, object]:
    data = yaml.safe_load(REX.read_text())
    data["turns"][2]["model"][-1] = {"say": text}
    return {"turns": data["turns"]}


async def test_runner_reports_a_wrong_end_state(tmp_path: Path, database_url: str) -> None:
    end = yaml.safe_load(REX.read_text())["end"]
    end["appointments"][0]["start"] = "2026-11-26T11:00"
    run = await run_scenario(load_scenario(_variant(tmp_path, {"end": end})), database_url)
    assert not run.passed
    assert any(f.startswith("appointments ") for f in run.failures)


async def test_runner_reports_an_invented_price(tmp_path: Path, database_url: str) -> None:
    change = _turn3_say("Agendado para amanhã às 10:00. Valor: R$ 99,00.")
    run = await run_scenario(load_scenario(_variant(tmp_path, change)), database_url)
    assert "1 ungrounded facts in replies: ['R$ 99,00']" in run.failures


async def test_runner_reports_unused_script_and_wrong_tools(
    tmp_path: Path, database_url: str
) -> None:
    data = yaml.safe_load(REX.read_text())
    data["turns"][0]["model"].append({"say": "sobrou"})
    data["turns"][1]["expect"]["tools"] = ["list_services"]
    run = await run_scenario(
        load_scenario(_variant(tmp_path, {"turns": data["turns"]})), database_url
    )
    assert "turn 1: 1 scripted outputs unused" in run.failures
    assert "turn 2: tools ['check_availability'] != expected ['list_services']" in run.failures


async def test_runs_leave_no_rows_behind(database_url: str) -> None:
    import psycopg

    from zapvet.db import libpq_url

    run = await run_scenario(load_scenario(REX), database_url)
    assert run.passed, run.failures
    with psycopg.connect(libpq_url(database_url)) as conn:
        assert conn.execute("SELECT count(*) FROM organizations").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM appointments").fetchone() == (0,)


def test_scenario_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="turns.0.model.0: Value error, a model step"):
        load_scenario(
            _variant(tmp_path, {"turns": [{"user": "oi", "model": [{"say": "a", "call": "b"}]}]})
        )
    with pytest.raises(ScenarioError, match="now must carry its UTC offset"):
        load_scenario(_variant(tmp_path, {"now": "2026-11-25T14:00:00"}))
    with pytest.raises(ScenarioError, match="organization file"):
        data = yaml.safe_load(REX.read_text())
        missing = tmp_path / "missing.yaml"
        missing.write_text(yaml.safe_dump({**data, "org": "nowhere.toml"}))
        load_scenario(missing)


def test_pass_k_needs_every_run_to_pass() -> None:
    good, bad = ScenarioRun(name="a"), ScenarioRun(name="a", failures=["boom"])
    assert summarise("a", [good, good, good]).pass_k == 1.0
    assert summarise("a", [good, bad, good]).pass_k == 0.0
    table = render([summarise("a", [good, good]), summarise("b", [good, bad])], k=2)
    assert "pass^2 = 0.50 (1/2 scenarios pass all 2 runs)" in table
    assert "✗ b: boom" in table


def test_report_shows_no_token_figures_when_no_model_call_was_measured() -> None:
    measured = summarise("a", [ScenarioRun(name="a")])
    assert measured.mean_prompt_tokens == 0
    line = render([measured], k=1).splitlines()[1]
    assert line.split()[-2:] == ["–", "–"]


def test_eval_command_prints_the_pass_k_table(services: ServiceUrls) -> None:
    env = {"DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url}
    result = zapvet("eval", str(REX), "-k", "2", env=env)
    assert result.exit_code == 0, result.output
    assert "rex-booking" in result.stdout
    assert "pass^2 = 1.00 (1/1 scenarios pass all 2 runs)" in result.stdout


def test_eval_with_a_real_model_needs_a_key(services: ServiceUrls) -> None:
    env = {"DATABASE_URL": services.database_url, "OPENAI_API_KEY": ""}
    result = zapvet("eval", str(REX), "--model", "openai:gpt-4o-mini", env=env)
    assert result.exit_code == 2
    assert "OPENAI_API_KEY: is not set" in result.stderr


def test_eval_with_a_real_model_ignores_the_script(services: ServiceUrls) -> None:
    with FakeOpenAIServer(responder=lambda _: Reply(text="Olá! Como posso ajudar?")) as server:
        env = {
            "DATABASE_URL": services.database_url,
            "REDIS_URL": services.redis_url,
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": server.base_url,
        }
        result = zapvet("eval", str(REX), "--model", "openai:gpt-4o-mini", env=env)
        assert len(server.requests) == 3  # one model call per turn: the script was not played
    # The fake model never books, so the end state check fails: exit 1, reason shown.
    assert result.exit_code == 1
    assert "✗ rex-booking: pets [] != expected ['Rex']" in result.stdout
    assert server.requests[0].body["model"] == "gpt-4o-mini"
