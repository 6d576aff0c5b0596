"""`zapvet demo` replays the Rex conversation through the real pipeline and reports it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, replace

import pytest
from opentelemetry.sdk.trace import TracerProvider

from zapvet.cli.demo import VOICE_NOTE_S, run_demo
from zapvet.config import load_settings
from zapvet.embedded import ServiceUrls
from zapvet.otel.tree import SpanRecord, SpanRecorder, recording_spans, render_trace, roots
from zapvet.testing.media import sha256, wav

PHONE = "5511999999999"  # the Rex scenario's customer
TEXTS = ("Rex", "Golden Retriever", "agendar", "10h")
FIRST = "Olá! Quero agendar uma consulta para meu cachorro Rex."
BOOKED = "Consulta Veterinária Geral on 2026-11-26 10:00 with Dra. Ana, scheduled, R$ 120,00"


@pytest.fixture(scope="module")
def demo_output(services: ServiceUrls) -> str:
    env = {**os.environ, "DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url}
    for name in [name for name in env if name.startswith("OTEL_")]:
        del env[name]  # the tree must need no exporter configured
    result = subprocess.run(
        [sys.executable, "-m", "zapvet", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_demo_books_rex_through_the_pipeline(demo_output: str) -> None:
    out = demo_output
    voice = f"👤 Cliente (🎤 áudio de 3 s): {FIRST}"
    assert voice in out and "/audio/transcriptions" in out
    assert "👤 Cliente: Consulta geral. Pode ser amanhã de manhã? É a primeira vez sim." in out
    assert "Valor: R$ 120,00" in out
    assert "Time per stage (ms)" in out and out.count("  message ") == 3
    assert "Rex: cachorro, Golden Retriever, 3 anos" in out
    assert BOOKED in out
    assert "incoming processed: 3" in out and "outgoing sent: 3" in out


@pytest.mark.slow
def test_demo_first_message_is_a_voice_note_transcribed_once(services: ServiceUrls) -> None:
    said: list[str] = []
    result = run_demo(services.database_url, services.redis_url, said.append)
    note = sha256(wav(seconds=VOICE_NOTE_S))
    assert result.voice_note_sha256 == note
    assert result.transcribed_sha256 == [note]
    assert result.transcript[0] == ("Cliente", FIRST)
    assert [who for who, _ in result.transcript] == ["Cliente", "Pet Feliz"] * 3
    assert result.rows["appointments"] == [f"#1 {BOOKED}"]
    assert len(result.stages) == 3


@dataclass
class Line:
    name: str
    parent: Line | None


def _tree(out: str) -> list[Line]:
    """The printed tree, each line knowing its parent line (by indentation)."""
    _, header, rest = out.partition("Trace of message 3 (span names and durations, no content):")
    assert header, out[-3000:]
    lines: list[Line] = []
    stack: list[Line] = []
    for raw in rest.strip("\n").split("\n"):
        match = re.fullmatch(r"  (?P<indent>(?:  )*)(?P<name>\S.*?)  \d+\.\d ms", raw)
        assert match, f"not a tree line: {raw!r}"
        depth = len(match["indent"]) // 2
        assert depth <= len(stack), f"{raw!r} skips a level"
        del stack[depth:]
        line = Line(match["name"], stack[-1] if stack else None)
        lines.append(line)
        stack.append(line)
    return lines


def _path_exists(lines: list[Line], names: list[str]) -> bool:
    """Some line named `names[-1]` whose parent chain reads `names` from the top down."""
    for line in lines:
        chain: list[str] = []
        node: Line | None = line
        while node is not None and len(chain) < len(names):
            chain.insert(0, node.name)
            node = node.parent
        if chain == names:
            return True
    return False


@pytest.mark.slow
def test_demo_prints_one_message_trace_as_a_tree(demo_output: str) -> None:
    lines = _tree(demo_output)
    webhook = "POST /webhooks/evolution/{instance}"
    assert lines[0].name == webhook and lines[0].parent is None
    assert [line.name for line in lines if line.parent is None] == [webhook]
    drain = [webhook, "ingest evolution", "send inbound", "process inbound"]
    assert _path_exists(lines, [*drain, "route"])
    assert _path_exists(lines, [*drain, "invoke_agent client", "node agent", "chat gpt-4o-mini"])
    assert _path_exists(
        lines, [*drain, "invoke_agent client", "node tools", "execute_tool book_appointment"]
    )
    send = ["send evolution", "POST"]  # the drain sends its reply right after its commit
    assert _path_exists(lines, [*drain, *send])
    assert any(line.name.startswith("postgresql") for line in lines)
    tree = demo_output.partition("Trace of message 3")[2]
    assert PHONE not in tree
    assert not [text for text in TEXTS if text in tree]


# -- the tree's pieces, without the pipeline -------------------------------------------------


def _span(
    name: str, span_id: int, parent: int | None, start: int, end: int, system: str | None = None
) -> SpanRecord:
    ms = 1_000_000
    return SpanRecord(name, 7, span_id, parent, start * ms, end * ms, system)


def test_render_trace_indents_children_in_start_order_and_folds_database_calls() -> None:
    spans = [
        _span("webhook", 1, 99, 0, 50),  # 99: the caller's span, not recorded
        _span("job", 3, 1, 20, 45),
        _span("SELECT", 4, 1, 2, 3, system="postgresql"),
        _span("SELECT", 5, 1, 4, 6, system="postgresql"),
        _span("UPDATE", 6, 1, 6, 7, system="postgresql"),
        _span("EVALSHA", 7, 1, 8, 9, system="redis"),
        _span("chat gpt-4o-mini", 8, 3, 21, 30),
        replace(_span("another message", 9, None, 5, 6), trace_id=8),
    ]
    assert [root.name for root in roots(spans)] == ["webhook", "another message"]
    assert render_trace(spans, roots(spans)[0]) == [
        "webhook  50.0 ms",
        "  postgresql ×3: SELECT ×2, UPDATE  4.0 ms",
        "  redis EVALSHA  1.0 ms",
        "  job  25.0 ms",
        "    chat gpt-4o-mini  9.0 ms",
    ]


def test_render_trace_masks_phone_numbers_even_in_span_names() -> None:
    spans = [_span(f"GET /contacts/{PHONE}", 1, None, 0, 2)]
    assert render_trace(spans, spans[0]) == ["GET /contacts/<phone>  2.0 ms"]


def test_span_recorder_keeps_ended_spans_and_counts_open_ones() -> None:
    recorder = SpanRecorder()
    provider = TracerProvider()  # not the global one: other tests own that
    provider.add_span_processor(recorder)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("job") as job:
        trace_id = job.get_span_context().trace_id
        with tracer.start_as_current_span("SELECT", attributes={"db.system": "postgresql"}):
            assert recorder.open_in(trace_id) == 2
        assert recorder.open_in(trace_id) == 1
    assert recorder.open_in(trace_id) == 0
    select, outer = recorder.spans
    assert (select.name, select.system, select.parent_id) == ("SELECT", "postgresql", outer.span_id)
    assert (outer.name, outer.system, outer.parent_id) == ("job", None, None)
    provider.shutdown()


def test_recording_spans_is_off_with_the_sdk_disabled() -> None:
    with recording_spans(load_settings(otel_sdk_disabled=True)) as recorder:
        assert recorder is None
