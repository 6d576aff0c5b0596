"""`zapvet eval` shows run i of N with the time elapsed: a bar on a terminal, lines in logs."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest
import structlog
from rich.console import Console
from typer.testing import CliRunner

from tests.conftest import REPO
from zapvet.cli import app
from zapvet.embedded import ServiceUrls
from zapvet.evals.progress import PlainProgress, RichProgress, elapsed_text, eval_progress
from zapvet.evals.runner import ScenarioRun
from zapvet.evals.scenario import load_scenario

REX = REPO / "scenarios" / "client" / "01-rex-booking.yaml"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00"), (7.9, "0:07"), (750, "12:30"), (3723, "1:02:03")]
)
def test_progress_elapsed_time_reads_like_a_clock(seconds: float, text: str) -> None:
    assert elapsed_text(seconds) == text


def test_progress_plain_lines_count_runs_and_time_them() -> None:
    rex, clock, stream = load_scenario(REX), FakeClock(), io.StringIO()
    with PlainProgress(4, 2, stream=stream, clock=clock) as progress:
        clock.now += 1.0  # the scratch database is migrated before the first run
        progress.starting(rex, 0)
        clock.now += 2.5
        progress.finished(rex, 0, ScenarioRun(rex.name))
        progress.starting(rex, 1)
        clock.now += 66.75
        progress.finished(rex, 1, ScenarioRun(rex.name, failures=["pets [] != ['Rex']"]))
    assert stream.getvalue().splitlines() == [
        "run 1/4 ✓ rex-booking (1/2) in 2.5 s, 0:03 elapsed",
        "run 2/4 ✗ rex-booking (2/2) in 66.8 s, 1:10 elapsed",
    ]


def test_progress_a_terminal_gets_a_bar_naming_the_running_scenario() -> None:
    rex, clock, screen = load_scenario(REX), FakeClock(), io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    with RichProgress(2, 2, console=console, clock=clock) as progress:
        progress.starting(rex, 0)
        progress.bar.refresh()
        running = screen.getvalue()
        clock.now += 3.0
        progress.finished(rex, 0, ScenarioRun(rex.name))
        progress.starting(rex, 1)
        clock.now += 3.0
        progress.finished(rex, 1, ScenarioRun(rex.name))
    assert "rex-booking (1/2)" in running and "0/2" in running
    shown = screen.getvalue()
    assert "run 1/2 ✓ rex-booking (1/2) in 3.0 s, 0:03 elapsed" in shown
    assert "run 2/2 ✓ rex-booking (2/2) in 3.0 s, 0:06 elapsed" in shown
    assert "2/2" in shown.rsplit("elapsed", 1)[1]  # the bar's last frame: all runs done


def test_progress_is_a_bar_only_on_a_terminal() -> None:
    assert isinstance(eval_progress(3, 1, stream=io.StringIO()), PlainProgress)
    assert isinstance(eval_progress(3, 1, stream=Terminal()), RichProgress)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The command sets up logging on the runner's stderr, which closes after the call."""
    yield
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    structlog.reset_defaults()


LINE = re.compile(r"^run (\d)/2 ✓ rex-booking \((\d)/2\) in \d+\.\d s, \d+:\d\d elapsed$")


@pytest.mark.usefixtures("restore_logging")
def test_progress_eval_command_prints_a_line_per_run_without_a_terminal(
    services: ServiceUrls,
) -> None:
    env = {"DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url}
    result = CliRunner().invoke(app, ["eval", str(REX), "-k", "2"], env=env)
    assert result.exit_code == 0, result.output
    runs = [match.groups() for match in map(LINE.match, result.stderr.splitlines()) if match]
    assert runs == [("1", "1"), ("2", "2")], result.stderr
    assert "pass^2 = 1.00" in result.stdout and "elapsed" not in result.stdout
