"""pass^k over scenario runs: a scenario passes at k only if all k of its runs pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zapvet.evals.outcome import ScenarioRun


@dataclass(frozen=True)
class ScenarioSummary:
    name: str
    runs: int
    passed: int
    mean_prompt_tokens: int
    cacheable_share: float
    first_failure: str | None

    @property
    def pass_k(self) -> float:
        return 1.0 if self.runs and self.passed == self.runs else 0.0


def summarise(name: str, runs: Sequence[ScenarioRun]) -> ScenarioSummary:
    """Counts and token figures of `runs` of one scenario."""
    calls = [
        (tokens, turn.static_tokens)
        for run in runs
        for turn in run.turns
        for tokens in turn.prompt_tokens
    ]
    total = sum(tokens for tokens, _ in calls)
    static = sum(min(static, tokens) for tokens, static in calls)
    failure = next((run.failures[0] for run in runs if run.failures), None)
    return ScenarioSummary(
        name=name,
        runs=len(runs),
        passed=sum(1 for run in runs if run.passed),
        mean_prompt_tokens=round(total / len(calls)) if calls else 0,
        cacheable_share=static / total if total else 0.0,
        first_failure=failure,
    )


def render(summaries: Sequence[ScenarioSummary], k: int) -> str:
    """A plain-text table, one line per scenario, then the overall pass^k."""
    width = max([len("scenario"), *(len(s.name) for s in summaries)])
    lines = [
        f"{'scenario':<{width}}  {'passed':>7}  {'pass^' + str(k):>7}  "
        f"{'prompt tok/call':>15}  {'stable prefix':>13}"
    ]
    for s in summaries:
        # No model call measured (a `via: drain` scenario's calls happen inside the worker).
        tokens, share = (
            (f"{s.mean_prompt_tokens:,}", f"{s.cacheable_share:.0%}")
            if s.mean_prompt_tokens
            else ("–", "–")
        )
        lines.append(
            f"{s.name:<{width}}  {f'{s.passed}/{s.runs}':>7}  {s.pass_k:>7.2f}  "
            f"{tokens:>15}  {share:>13}"
        )
    for s in summaries:
        if s.first_failure:
            lines.append(f"  ✗ {s.name}: {s.first_failure}")
    overall = sum(s.pass_k for s in summaries) / len(summaries) if summaries else 0.0
    passing = sum(1 for s in summaries if s.pass_k == 1.0)
    lines.append(
        f"pass^{k} = {overall:.2f} ({passing}/{len(summaries)} scenarios pass all {k} runs)"
    )
    return "\n".join(lines)
