"""Every client scenario passes three runs in a row with the scripted model (pass^3 = 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from zapvet.evals.runner import run_scenario
from zapvet.evals.scenario import load_scenario

SCENARIOS = sorted((REPO / "scenarios" / "client").glob("*.yaml"))
pytestmark = pytest.mark.anyio


def test_there_are_at_least_twelve_client_scenarios() -> None:
    assert len(SCENARIOS) >= 12


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
async def test_client_scenario_passes_three_times(path: Path, database_url: str) -> None:
    scenario = load_scenario(path)
    for attempt in range(3):
        run = await run_scenario(scenario, database_url)
        assert run.passed, f"run {attempt + 1}: {run.failures}"
