"""`zapvet eval`: conversation scenarios on a scratch database, and their pass^k table."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer

from zapvet.cli.environment import command_settings, fail, services_for
from zapvet.errors import ConfigError


def eval_(
    scenarios: Annotated[
        list[Path], typer.Argument(help="Scenario files (YAML) or directories of them.")
    ],
    model: Annotated[
        str, typer.Option(help="`scripted` (the scenarios' own model outputs) or `openai:MODEL`.")
    ] = "scripted",
    k: Annotated[int, typer.Option("-k", min=1, help="Runs per scenario (pass^k).")] = 1,
) -> None:
    """Run conversation scenarios on a scratch database and print a pass^k table.

    With a real model the scripted outputs are ignored and only each scenario's end state
    and facts are checked. Scenarios with media items get a fake gateway and transcription
    server on loopback (`zapvet.testing.media_rig`); `via: drain` scenarios play through the
    worker's drain (`zapvet.testing.worker`). Progress (run i of N, elapsed time)
    goes to stderr: a bar on a terminal, a line per run otherwise. Exits 1 unless every
    scenario passes all k runs.
    """
    from zapvet.evals.progress import eval_progress
    from zapvet.evals.report import render
    from zapvet.evals.runner import ModelFactory, Worker
    from zapvet.evals.scenario import ScenarioError, expand_paths, load_scenario
    from zapvet.evals.suite import evaluate
    from zapvet.llm.openai import build_chat_model

    files = expand_paths(scenarios)
    if not files:
        fail(
            "no scenario files found", "pass YAML files or a directory such as scenarios/client", 2
        )
    try:
        loaded = [load_scenario(path) for path in files]
    except ScenarioError as exc:
        fail(str(exc), "fix the scenario file", 2)
    settings = command_settings()
    factory: ModelFactory | None = None
    if model != "scripted":
        provider, _, name = model.partition(":")
        if provider != "openai" or not name:
            fail(f"unknown model {model!r}", "use --model scripted or --model openai:MODEL", 2)
        try:
            build_chat_model(settings, model=name)
        except ConfigError as exc:
            fail(str(exc), "set OPENAI_API_KEY (and OPENAI_BASE_URL for other providers)", 2)

        def factory() -> Any:
            return build_chat_model(settings, model=name, temperature=None)

    with ExitStack() as stack:
        services = stack.enter_context(services_for(settings))
        # Media turns need bytes to fetch and voice notes to transcribe: fakes on loopback,
        # whatever model answers (a scenario writes its own transcripts).
        rig = None
        if any(turn.has_media() for scenario in loaded for turn in scenario.turns):
            from zapvet.testing.media_rig import media_rig

            rig = stack.enter_context(media_rig())
        worker: Worker | None = None
        if any(scenario.via == "drain" for scenario in loaded):
            from zapvet.testing.worker import drain_worker

            worker = drain_worker
        progress = eval_progress(len(loaded) * k, k)
        stack.enter_context(progress)
        summaries = evaluate(
            loaded,
            services.database_url,
            k=k,
            model_factory=factory,
            progress=progress,
            media=rig,
            worker=worker,
        )
    typer.echo(render(summaries, k))
    if any(summary.pass_k < 1 for summary in summaries):
        raise typer.Exit(1)
