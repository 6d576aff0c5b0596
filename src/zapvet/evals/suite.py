"""Running a set of scenarios k times each, on a scratch database of their own."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Protocol

from zapvet import db
from zapvet.evals.outcome import ScenarioRun
from zapvet.evals.report import ScenarioSummary, summarise
from zapvet.evals.runner import MediaRig, ModelFactory, Worker, run_scenario
from zapvet.evals.scenario import Scenario


class Progress(Protocol):
    """Told about each run as it starts and ends (`attempt` counts from 0 to k - 1)."""

    def starting(self, scenario: Scenario, attempt: int) -> None: ...

    def finished(self, scenario: Scenario, attempt: int, run: ScenarioRun) -> None: ...


async def run_suite(
    scenarios: Sequence[Scenario],
    database_url: str,
    *,
    k: int,
    model_factory: ModelFactory | None = None,
    progress: Progress | None = None,
    media: MediaRig | None = None,
    worker: Worker | None = None,
) -> list[ScenarioSummary]:
    """Each scenario k times, one after another, in one event loop (the OpenAI client's
    connection pool is bound to the loop it was first used on)."""
    summaries = []
    for scenario in scenarios:
        runs = []
        for attempt in range(k):
            if progress:
                progress.starting(scenario, attempt)
            run = await run_scenario(
                scenario, database_url, model_factory=model_factory, media=media, worker=worker
            )
            runs.append(run)
            if progress:
                progress.finished(scenario, attempt, run)
        summaries.append(summarise(scenario.name, runs))
    return summaries


def evaluate(
    scenarios: Sequence[Scenario],
    server_url: str,
    *,
    k: int,
    model_factory: ModelFactory | None = None,
    progress: Progress | None = None,
    media: MediaRig | None = None,
    worker: Worker | None = None,
) -> list[ScenarioSummary]:
    """Run the suite on a freshly migrated scratch database that is dropped afterwards."""
    with db.scratch_database(server_url, f"zapvet_eval_{os.getpid()}") as url:
        return asyncio.run(
            run_suite(
                scenarios,
                url,
                k=k,
                model_factory=model_factory,
                progress=progress,
                media=media,
                worker=worker,
            )
        )
