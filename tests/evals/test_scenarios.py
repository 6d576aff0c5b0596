"""Every scenario passes three runs in a row with the scripted model (pass^3 = 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from zapvet.evals.runner import run_scenario
from zapvet.evals.scenario import load_scenario
from zapvet.testing.media_rig import FakeMediaRig
from zapvet.testing.worker import drain_worker

CLIENT = sorted((REPO / "scenarios" / "client").glob("*.yaml"))
AURORA = sorted((REPO / "scenarios" / "aurora").glob("*.yaml"))
pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # every scenario, played three times


def test_there_are_enough_scenarios() -> None:
    assert len(CLIENT) >= 12 and len(AURORA) >= 10
    assert all(load_scenario(path).agent == "aurora" for path in AURORA)


@pytest.mark.parametrize("path", CLIENT + AURORA, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_scenario_passes_three_times(
    path: Path, database_url: str, rig: FakeMediaRig
) -> None:
    scenario = load_scenario(path)
    for attempt in range(3):
        run = await run_scenario(scenario, database_url, media=rig, worker=drain_worker)
        assert run.passed, f"run {attempt + 1}: {run.failures}"
