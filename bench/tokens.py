"""Token cost: prompt tokens per model call and per turn over every conversation scenario, and
the share of each prompt that is a byte-stable prefix a provider can serve from its cache.

Plays each scenario of scenarios/client and scenarios/aurora once with its scripted model
(the `zapvet eval` runner, on a scratch database) and reads back every request the model
received. Tokens are o200k_base with OpenAI's per-message framing (`count_message_tokens`,
the figure `zapvet eval` reports). A call's stable prefix is what it shares, token for
token, with the previous request of the same conversation, and at least the static system
prompt (byte-identical for every conversation of the organization). Baseline: the whole
prompt. Run `python -m bench.tokens --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from langchain_core.messages import AIMessage, BaseMessage

from zapvet import db
from zapvet.config import load_settings
from zapvet.embedded import running_services
from zapvet.evals.runner import run_scenario
from zapvet.evals.scenario import Scenario, expand_paths, load_scenario
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.llm.tokens import count_message_tokens, count_tokens, encoding
from zapvet.logging import setup_logging
from zapvet.testing.media_rig import FakeMediaRig, media_rig
from zapvet.testing.worker import drain_worker

ROOT = Path(__file__).resolve().parent.parent
SUITES = [ROOT / "scenarios" / "client", ROOT / "scenarios" / "aurora"]
#: OpenAI caches prompts of at least 1,024 tokens, then in steps of 128 tokens.
CACHE_MIN, CACHE_STEP = 1024, 128

Piece = tuple[str, int]  # (identity, weight in tokens)


def pieces(messages: Sequence[BaseMessage]) -> list[Piece]:
    """A request as a sequence comparable across requests: each message's framing (role and
    tool calls, 3 tokens) then each of its content tokens; weights sum to the prompt tokens."""
    found: list[Piece] = []
    for message in messages:
        calls = message.tool_calls if isinstance(message, AIMessage) else []
        frame = json.dumps([message.type, [(c["name"], c["args"]) for c in calls]], default=str)
        found.append((frame, 3))
        content = message.content if isinstance(message.content, str) else str(message.content)
        found += [(str(t), 1) for t in encoding().encode(content, disallowed_special=())]
    return [*found, ("<|start|>assistant", 3)]


def common_prefix(a: list[Piece], b: list[Piece]) -> int:
    """Tokens of the longest common prefix of two requests."""
    total = 0
    for left, right in zip(a, b, strict=False):
        if left != right:
            break
        total += left[1]
    return total


def openai_cached(prefix: int) -> int:
    """How much of a `prefix`-token match OpenAI's 1,024 + k·128 rule would serve from cache."""
    if prefix < CACHE_MIN:
        return 0
    return CACHE_MIN + (prefix - CACHE_MIN) // CACHE_STEP * CACHE_STEP


@dataclass(frozen=True)
class Call:
    tokens: int
    prefix: int  # shared with the previous request, or the system prompt if longer
    system: int  # the static system prompt message alone (framing included)


@dataclass(frozen=True)
class Played:
    scenario: Scenario
    calls: list[Call]
    turn_tokens: list[int]
    static_tokens: int
    tool_tokens: int
    tools: int
    failures: list[str]


async def play(scenario: Scenario, database_url: str, rig: FakeMediaRig) -> Played:
    """One scripted run of `scenario`, keeping the model to read its requests."""
    models: list[ScriptedChatModel] = []

    def factory() -> ScriptedChatModel:
        models.append(ScriptedChatModel())
        return models[-1]

    # Media turns fetch from the fake rig; `via: drain` ones run through the worker's drain.
    run = await run_scenario(
        scenario, database_url, model_factory=factory, media=rig, worker=drain_worker
    )
    requests = models[-1].calls if models else []
    calls, previous = [], None
    for request in requests:
        messages: list[BaseMessage] = request["messages"]
        current = pieces(messages)
        system = 3 + count_tokens(str(messages[0].content)) if messages else 0
        shared = common_prefix(previous, current) if previous else 0
        calls.append(Call(count_message_tokens(messages), max(shared, system), system))
        previous = current
    schemas = requests[0].get("tools", []) if requests else []
    return Played(
        scenario=scenario,
        calls=calls,
        turn_tokens=[sum(turn.prompt_tokens) for turn in run.turns if turn.prompt_tokens],
        static_tokens=max((turn.static_tokens for turn in run.turns), default=0),
        tool_tokens=count_tokens(json.dumps(schemas, ensure_ascii=False)),
        tools=len(schemas),
        failures=run.failures,
    )


def spread(values: Sequence[float], percent: bool = False) -> str:
    """min / median / max."""
    if not values:
        return "-"
    shown = [min(values), statistics.median(values), max(values)]
    return " / ".join(f"{v:.0%}" if percent else f"{v:,.0f}" for v in shown)


def shares(played: Sequence[Played]) -> dict[str, list[float]]:
    """Per call: stable prefix, system prompt and OpenAI-cacheable shares of the messages, and
    the same with the tool schemas counted in (they precede the messages and never change)."""
    found: dict[str, list[float]] = {k: [] for k in ("prefix", "system", "cached", "tp", "tc")}
    for p in played:
        tools = p.tool_tokens
        for c in p.calls:
            found["prefix"].append(c.prefix / c.tokens)
            found["system"].append(c.system / c.tokens)
            found["cached"].append(openai_cached(c.prefix) / c.tokens)
            found["tp"].append((c.prefix + tools) / (c.tokens + tools))
            found["tc"].append(openai_cached(c.prefix + tools) / (c.tokens + tools))
    return found


def render(played: list[Played]) -> str:
    lines = [
        "| scenario | agent | turns | calls | prompt tokens per call (min / median / max) | "
        "prompt tokens per turn (median) | stable prefix share (min / median / max) | "
        "system prompt alone (median) | with tool schemas: stable / OpenAI-cacheable (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in played:
        s = shares([p])
        per_turn = statistics.median(p.turn_tokens) if p.turn_tokens else 0
        lines.append(
            f"| {p.scenario.name} | {p.scenario.agent} | {len(p.turn_tokens)} | {len(p.calls)} | "
            f"{spread([c.tokens for c in p.calls])} | {per_turn:,.0f} | "
            f"{spread(s['prefix'], True)} | {statistics.median(s['system']):.0%} | "
            f"{statistics.median(s['tp']):.0%} / {statistics.median(s['tc']):.0%} |"
        )
    lines += [
        "",
        "| overall | calls | prompt tokens per call | tokens per turn | stable prefix share | "
        "system prompt alone | OpenAI-cacheable | with tool schemas: stable prefix share | "
        "with tool schemas: OpenAI-cacheable | prompt tokens, total | not in a stable prefix |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for agent in ("client", "aurora", None):
        chosen = [p for p in played if agent is None or p.scenario.agent == agent]
        calls = [c for p in chosen for c in p.calls]
        turns = [t for p in chosen for t in p.turn_tokens]
        if not calls:
            continue
        s = shares(chosen)
        total = sum(c.tokens for c in calls)
        fresh = sum(c.tokens - c.prefix for c in calls)
        lines.append(
            f"| {agent or 'all'} ({len(chosen)} scenarios) | {len(calls)} | "
            f"{spread([c.tokens for c in calls])} | {spread(turns)} | "
            f"{spread(s['prefix'], True)} | {spread(s['system'], True)} | "
            f"{spread(s['cached'], True)} | {spread(s['tp'], True)} | {spread(s['tc'], True)} | "
            f"{total:,} | {fresh:,} ({fresh / total:.0%}) |"
        )
    lines += [
        "",
        "| agent | organization file | static system prompt tokens | tools | "
        "tool schemas, tokens of their JSON (approx.) |",
        "|---|---|---|---|---|",
    ]
    seen = set()
    for p in played:
        key = (p.scenario.agent, p.scenario.org)
        if key not in seen:
            seen.add(key)
            lines.append(
                f"| {p.scenario.agent} | {p.scenario.org} | {p.static_tokens:,} | {p.tools} | "
                f"{p.tool_tokens:,} |"
            )
    failed = [f"- {p.scenario.name}: {p.failures[0]}" for p in played if p.failures]
    if failed:
        lines += ["", "Scenario runs that did not pass (figures still shown):", *failed]
    return "\n".join(lines)


async def run(paths: list[Path], server_url: str) -> str:
    scenarios = [load_scenario(path) for path in expand_paths(paths)]
    name = f"zapvet_bench_tokens_{os.getpid()}"
    with db.scratch_database(server_url, name) as url, media_rig() as rig:
        played = []
        for scenario in scenarios:
            played.append(await play(scenario, url, rig))
            print(f"played {scenario.name}", file=sys.stderr, flush=True)  # noqa: T201
    return render(played)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tokens",
        description="Prompt tokens per call and turn over the conversation scenarios, and the "
        "share of each prompt that is a byte-stable (cacheable) prefix. Prints markdown.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        default=SUITES,
        help="scenario files or directories (default: scenarios/client and scenarios/aurora)",
    )
    args = parser.parse_args()
    settings = load_settings()
    setup_logging(settings, level=logging.WARNING)  # stderr: stdout is the markdown report
    if settings.database_url:
        print(asyncio.run(run(args.paths, settings.database_url)))  # noqa: T201
        return
    with running_services(settings) as services:
        print(asyncio.run(run(args.paths, services.database_url)))  # noqa: T201


if __name__ == "__main__":
    main()
