"""`via: drain` scenarios: their keys are checked strictly, their drains run in time order,
and a run through the worker's drain reports what the customer got."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from zapvet.evals.checks import check_turn
from zapvet.evals.outcome import TurnRecord
from zapvet.evals.runner import run_scenario
from zapvet.evals.scenario import ScenarioError, Turn, load_scenario
from zapvet.evals.worker import Schedule, grouped
from zapvet.testing.worker import drain_worker

FLOOD = REPO / "scenarios" / "client" / "24-flooding-customer.yaml"
BOT_LOOP = REPO / "scenarios" / "client" / "25-bot-loop.yaml"
T0 = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "drain.yaml"
    path.write_text(yaml.safe_dump({**data, "org": str(REPO / "examples" / "petfeliz.toml")}))
    return path


def _drain_scenario(**change: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "drain-variant",
        "via": "drain",
        "now": "2026-11-25T14:00:00-03:00",
        "contact": {"phone": "5511977771111", "name": "Ana"},
        "turns": [{"user": "oi", "model": [{"say": "Oi!"}]}],
    }
    return {**data, **change}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"via": "agent", "limits": {"bot_loop_exchanges": 2}}, "set `via: drain`"),
        ({"limits": {"contact_messages_per_minute": 0}}, "limits.contact_messages_per_minute"),
        ({"limits": {"contact_per_minute": 2}}, "limits.contact_per_minute: Extra inputs"),
        ({"limits": {"org_turns_per_minute": 1}}, "org_turns_per_minute counts by the wall"),
        ({"via": "sideways"}, "via: Input should be 'agent' or 'drain'"),
        ({"turns": [{"user": "oi", "after": -1}]}, "turns.0.after: Input should be greater"),
        (
            {"turns": [{"user": "oi", "after": 5, "at": "2026-11-25T14:00:05-03:00"}]},
            "`at` (a moment) or `after` (seconds), not both",
        ),
        (
            {
                "turns": [
                    {"user": "a", "after": 60},
                    {"user": "b", "at": "2026-11-25T14:00:30-03:00"},
                ]
            },
            "turn 2 is `at` a moment before the turn before it",
        ),
        ({"turns": [{"user": "oi", "expect": {"tools": []}}]}, "not the agent's tools"),
        ({"turns": [{"user": "oi", "expect": {"heard": ["oi"]}}]}, "not the agent's tools"),
        ({"turns": [{"user": [{"sticker": {}}]}]}, "turn 1: `via: drain` plays texts only"),
        (
            {"via": "agent", "turns": [{"user": "oi", "expect": {"answered": [["oi"]]}}]},
            "expect.answered needs `via: drain`",
        ),
        ({"end": {"alerts": -1}}, "end.alerts: Input should be greater than or equal to 0"),
    ],
)
def test_scenario_drain_keys_are_checked(
    tmp_path: Path, change: dict[str, Any], error: str
) -> None:
    with pytest.raises(ScenarioError, match=re.escape(error)):
        load_scenario(_write(tmp_path, _drain_scenario(**change)))


def test_scenario_turns_arrive_after_the_turn_before() -> None:
    scenario = load_scenario(BOT_LOOP)
    moments = [moment - scenario.now for moment in scenario.arrivals()]
    assert moments == [timedelta(seconds=s) for s in (0, 4, 8, 12)]
    assert scenario.limits is not None and scenario.limits.bot_loop_exchanges == 3
    assert scenario.limits.model_fields_set == {"bot_loop_exchanges"}  # the rest: the org's


def test_worker_schedule_runs_drains_in_time_order_once_each() -> None:
    schedule = Schedule()
    later, sooner = T0 + timedelta(seconds=15), T0 + timedelta(seconds=3)
    schedule.add(later, 7)
    schedule.add(sooner, 7)
    schedule.add(sooner, 7)  # a second drain due then finds nothing: one covers both
    schedule.add(sooner, 8)
    assert len(schedule) == 3
    assert schedule.take(horizon=sooner) is None  # due at the horizon: the next turn's
    assert schedule.take(horizon=later) == (sooner, 7)
    assert schedule.take(horizon=later) == (sooner, 8)
    assert schedule.take(horizon=later) is None
    assert schedule.take(horizon=None) == (later, 7)  # after the last turn: everything
    assert schedule.take(horizon=None) is None


def test_worker_groups_closed_messages_by_the_moment_they_were_closed() -> None:
    later = T0 + timedelta(minutes=1)
    rows = [(T0, "um"), (T0, "dois"), (later, "três"), (later, "quatro")]
    assert grouped(rows) == [["um", "dois"], ["três", "quatro"]]
    assert grouped([]) == []


def _record(sent: list[str], answered: list[list[str]]) -> TurnRecord:
    return TurnRecord(
        user=[],
        reply="\n".join(sent) or None,
        tools=[],
        ungrounded=[],
        error=None,
        prompt_tokens=[],
        static_tokens=0,
        sent=sent,
        answered=answered,
    )


def test_check_turn_counts_every_message_sent_and_compares_what_was_answered() -> None:
    turn = Turn.model_validate(
        {"user": "oi", "expect": {"sent": ["Oi", "Já já"], "answered": [["oi"]]}}
    )
    assert check_turn(0, turn, _record(["Oi, Ana!", "Já já eu respondo"], [["oi"]]), True) == []
    assert check_turn(0, turn, _record(["Oi, Ana!"], [["oi"]]), True) == [
        "turn 1: 1 messages sent, expected 2"
    ]
    assert check_turn(0, turn, _record(["Oi, Ana!", "Olá"], [["oi"]]), True) == [
        "turn 1: message 2 sent lacks 'Já já': 'Olá'"
    ]
    assert check_turn(0, turn, _record(["Olá", "Olá"], [["oi"]]), False) == []  # real model
    assert check_turn(0, turn, _record(["a"], [["oi", "?"]]), False) == [
        "turn 1: answered [['oi', '?']] != expected [['oi']]",
        "turn 1: 1 messages sent, expected 2",
    ]


@pytest.mark.anyio
async def test_runner_drain_scenario_needs_the_worker(database_url: str) -> None:
    run = await run_scenario(load_scenario(BOT_LOOP), database_url)
    assert run.failures[0].startswith("crashed: ScenarioError: `via: drain` needs the worker")


@pytest.mark.anyio
@pytest.mark.slow  # whole turns through the drain
async def test_runner_reports_a_bot_loop_answered_when_the_limit_is_off(
    tmp_path: Path, database_url: str
) -> None:
    data = yaml.safe_load(BOT_LOOP.read_text())
    data["limits"] = {"bot_loop_exchanges": 0}  # 0 turns the check off
    data["turns"][3]["model"] = [{"say": "Posso ajudar com banho, tosa e consultas."}]
    scenario = load_scenario(_write(tmp_path, data))
    run = await run_scenario(scenario, database_url, worker=drain_worker)
    assert "turn 4: expected silence, got a reply" in run.failures
    assert "turn 4: 1 messages sent, expected 0" in run.failures
    assert "conversation 'active' != expected 'escalated'" in run.failures
    assert "0 escalation alerts queued, expected 1" in run.failures


@pytest.mark.anyio
@pytest.mark.slow  # whole turns through the drain
async def test_runner_reports_every_notice_of_a_flood(tmp_path: Path, database_url: str) -> None:
    data = yaml.safe_load(FLOOD.read_text())
    data["turns"][1]["expect"]["sent"] = ["28/11", "Desculpe a espera"]  # the second notice
    scenario = load_scenario(_write(tmp_path, data))
    run = await run_scenario(scenario, database_url, worker=drain_worker)
    assert run.failures == ["turn 2: 3 messages sent, expected 2"]
