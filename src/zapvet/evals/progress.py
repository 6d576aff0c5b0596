"""How far `zapvet eval` has got: run i of N and the time elapsed, on stderr.

On a terminal, a rich progress bar names the scenario running, with i/N and the elapsed
time, and each finished run stays printed above it. Elsewhere (CI logs, pipes, files) each
finished run is one plain line, so a log shows how far a slow or stuck run got.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from zapvet.evals.outcome import ScenarioRun
from zapvet.evals.scenario import Scenario

Clock = Callable[[], float]


def elapsed_text(seconds: float) -> str:
    """`0:07`, `12:30`, `1:02:03`."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _Counting:
    """What both displays share: the run count and the clocks."""

    def __init__(self, total: int, k: int, clock: Clock) -> None:
        self.total, self.k, self.clock = total, k, clock
        self.done = 0
        self.began = self.run_began = clock()

    def __enter__(self) -> Self:
        self.began = self.run_began = self.clock()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        return None

    def starting(self, scenario: Scenario, attempt: int) -> None:
        self.run_began = self.clock()

    def line(self, scenario: Scenario, attempt: int, run: ScenarioRun) -> str:
        """`run 3/6 ✓ rex-booking (1/2) in 2.1 s, 0:09 elapsed`; counts the run as done."""
        self.done += 1
        now = self.clock()
        mark = "✓" if run.passed else "✗"
        return (
            f"run {self.done}/{self.total} {mark} {scenario.name} ({attempt + 1}/{self.k}) "
            f"in {now - self.run_began:.1f} s, {elapsed_text(now - self.began)} elapsed"
        )


class PlainProgress(_Counting):
    """One line per finished run, for logs."""

    def __init__(
        self, total: int, k: int, *, stream: TextIO, clock: Clock = time.monotonic
    ) -> None:
        super().__init__(total, k, clock)
        self.stream = stream

    def finished(self, scenario: Scenario, attempt: int, run: ScenarioRun) -> None:
        self.stream.write(self.line(scenario, attempt, run) + "\n")
        self.stream.flush()


class RichProgress(_Counting):
    """A live bar on a terminal; finished runs are printed above it."""

    def __init__(
        self, total: int, k: int, *, console: Console, clock: Clock = time.monotonic
    ) -> None:
        super().__init__(total, k, clock)
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> Self:
        super().__enter__()
        self.bar.start()
        self.task = self.bar.add_task("eval", total=self.total)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.task is not None:
            self.bar.update(self.task, description="done")
        self.bar.stop()

    def starting(self, scenario: Scenario, attempt: int) -> None:
        super().starting(scenario, attempt)
        if self.task is not None:
            self.bar.update(self.task, description=f"{scenario.name} ({attempt + 1}/{self.k})")

    def finished(self, scenario: Scenario, attempt: int, run: ScenarioRun) -> None:
        self.bar.console.print(self.line(scenario, attempt, run), highlight=False, markup=False)
        if self.task is not None:
            self.bar.advance(self.task)


def eval_progress(
    total: int, k: int, *, stream: TextIO | None = None
) -> PlainProgress | RichProgress:
    """The display for `total` runs (k per scenario): a bar on a terminal, else lines."""
    stream = stream if stream is not None else sys.stderr
    if stream.isatty():
        return RichProgress(total, k, console=Console(file=stream))
    return PlainProgress(total, k, stream=stream)
