"""`zapvet demo`: the seed's Rex conversation, offline, through the real pipeline.

The customer's three messages go to the bridge as Evolution webhooks over HTTP; the worker
drains them from Redis, runs the client graph with the scripted model of the Rex scenario
(scenarios/client/01-rex-booking.yaml) and sends the replies through a local fake gateway.
The first message is a voice note: the worker fetches its bytes from the fake gateway and
transcribes them at a fake OpenAI-compatible server, whose transcript is the scenario's words.
The clock is pinned to the scenario's afternoon, so the booking is "tomorrow at 10:00"
whatever day the demo runs. A scratch database keeps the demo's rows apart from yours.
Bridge and worker run in this process, so `SpanRecorder` sees every span of a message's
trace and the demo prints one as a tree: span names and durations, never content.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text

from zapvet import db
from zapvet.evals.runner import scripted_reply
from zapvet.evals.scenario import Scenario, load_scenario
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.media.prepare import MediaSetup
from zapvet.money import format_brl
from zapvet.otel.tree import SpanRecorder, render_trace, roots
from zapvet.testing.media import sha256, wav
from zapvet.testing.openai_server import FakeOpenAIServer
from zapvet.testing.stack import LocalStack, MovableClock

REPO = Path(__file__).resolve().parents[3]
SCENARIO = REPO / "scenarios" / "client" / "01-rex-booking.yaml"

Print = Callable[[str], None]
#: How long the customer's voice note lasts, in seconds.
VOICE_NOTE_S = 3


@dataclass
class Stage:
    """Milliseconds one customer message spent in each stage of the pipeline."""

    webhook: float
    queued: float
    turn: float
    send: float


@dataclass
class DemoResult:
    transcript: list[tuple[str, str]] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    rows: dict[str, list[str]] = field(default_factory=dict)
    #: The last message's trace, one line per span (see `render_trace`); empty untraced.
    trace_tree: list[str] = field(default_factory=list)
    #: The sha256 of the voice note sent, and of each file the fake OpenAI server transcribed.
    voice_note_sha256: str = ""
    transcribed_sha256: list[str] = field(default_factory=list)


def voice_note() -> bytes:
    """The customer's first message as audio: a tone the fake server "hears" as words."""
    return wav(seconds=VOICE_NOTE_S)


def _scenario() -> Scenario:
    if not SCENARIO.exists():
        raise FileNotFoundError(f"{SCENARIO} is missing: run `zapvet demo` from a zapvet checkout")
    return load_scenario(SCENARIO)


def _stages(database_url: str, webhook_ms: list[float]) -> list[Stage]:
    engine = db.build_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            inbound = conn.execute(
                text(
                    "SELECT created_at, processed_at FROM messages "
                    "WHERE direction = 'incoming' ORDER BY id"
                )
            ).all()
            outbound = conn.execute(
                text(
                    "SELECT created_at, updated_at FROM messages "
                    "WHERE direction = 'outgoing' AND meta->>'part_of' IS NULL ORDER BY id"
                )
            ).all()
            turns = conn.execute(text("SELECT duration_ms FROM ai_interactions ORDER BY id")).all()
    finally:
        engine.dispose()
    stages = []
    for index, ((arrived, processed), (written, sent), (turn_ms,)) in enumerate(
        zip(inbound, outbound, turns, strict=False)
    ):
        waited = (processed - arrived).total_seconds() * 1000 - (turn_ms or 0)
        stages.append(
            Stage(
                webhook=webhook_ms[index],
                queued=max(waited, 0.0),
                turn=float(turn_ms or 0),
                send=(sent - written).total_seconds() * 1000,
            )
        )
    return stages


def _settled(database_url: str) -> int:
    engine = db.build_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            sql = "SELECT count(*) FROM messages WHERE direction = 'outgoing' AND status = 'sent'"
            return int(conn.execute(text(sql)).scalar() or 0)
    finally:
        engine.dispose()


def _rows(database_url: str, zone: str) -> dict[str, list[str]]:
    engine = db.build_engine(database_url, pool_size=1)
    queries = {
        "contacts": "SELECT name || ' (' || phone || ')' FROM contacts ORDER BY id",
        "pets": "SELECT name || ': ' || species || ', ' || coalesce(breed, '-') || ', ' "
        "|| coalesce(age_years::text, '?') || ' anos' FROM pets ORDER BY id",
        "appointments": "SELECT '#' || a.id || ' ' || s.name || ' on ' "
        "|| to_char(a.starts_at AT TIME ZONE :zone, 'YYYY-MM-DD HH24:MI') || ' with ' || r.name "
        "|| ', ' || a.status || ', ' || a.price_cents FROM appointments a "
        "JOIN services s ON s.id = a.service_id JOIN resources r ON r.id = a.resource_id",
        "messages": "SELECT direction || ' ' || status || ': ' || count(*) FROM messages "
        "GROUP BY direction, status ORDER BY 1",
        "ai_interactions": "SELECT ai_type || ' ' || status || ', model ' || model || ', '"
        " || input_tokens || ' in / ' || output_tokens || ' out tokens, ' || tool_calls "
        "|| ' tool calls' FROM ai_interactions ORDER BY id",
    }
    try:
        with engine.connect() as conn:
            found = {
                name: [str(row[0]) for row in conn.execute(text(sql), {"zone": zone})]
                for name, sql in queries.items()
            }
    finally:
        engine.dispose()
    found["appointments"] = [_money(line) for line in found["appointments"]]
    return found


def _money(line: str) -> str:
    head, _, cents = line.rpartition(", ")
    return f"{head}, {format_brl(int(cents))}" if cents.isdigit() else line


def _transcripts(database_url: str) -> list[str]:
    """What the worker heard in the voice notes, as stored on their rows."""
    engine = db.build_engine(database_url, pool_size=1)
    sql = (
        "SELECT meta->'media'->>'transcript' FROM messages "
        "WHERE direction = 'incoming' AND message_type = 'audio' ORDER BY id"
    )
    try:
        with engine.connect() as conn:
            return [str(row[0]) for row in conn.execute(text(sql)) if row[0] is not None]
    finally:
        engine.dispose()


def _send_voice_note(
    stack: LocalStack, phone: str, audio: bytes, name: str | None, clock: MovableClock
) -> None:
    payload = stack.gateway.incoming_media(
        phone,
        "audio",
        audio,
        mimetype="audio/ogg; codecs=opus",
        ptt=True,
        seconds=VOICE_NOTE_S,
        push_name=name,
        timestamp=clock(),
    )
    stack.post(payload).raise_for_status()


def _more_than(stack: LocalStack, count: int) -> Callable[[], bool]:
    return lambda: len(stack.gateway.sent) > count


def _last_trace(stack: LocalStack, spans: SpanRecorder) -> list[str]:
    recorded = spans.spans
    parents = {span.parent_id for span in recorded}
    # A webhook's span, not a span whose parent is still open (the drain's inline send ends
    # before its job's span does).
    messages = [
        root
        for root in roots(recorded)
        if root.span_id in parents and root.name.startswith("POST /webhooks/")
    ]
    if not messages:
        return []
    last = messages[-1]
    # The reply is recorded as sent inside its job's span; the tree waits for it to end.
    stack.wait(lambda: spans.open_in(last.trace_id) == 0, what="the last message's spans")
    return render_trace(spans.spans, last)


def run_demo(
    server_url: str, redis_url: str, say: Print, spans: SpanRecorder | None = None
) -> DemoResult:
    """Play the Rex conversation through a fresh pipeline on `server_url` / `redis_url`.

    With `spans` (see `recording_spans`), `DemoResult.trace_tree` is the last message's trace.
    """
    scenario = _scenario()
    model = ScriptedChatModel()
    clock = MovableClock()
    clock.advance(scenario.now - clock())
    result = DemoResult()
    webhook_ms: list[float] = []
    name = f"zapvet_demo_{os.getpid()}"
    audio = voice_note()
    result.voice_note_sha256 = sha256(audio)
    first = next(text_ for turn in scenario.turns for text_ in turn.texts())
    openai = FakeOpenAIServer(transcripts={result.voice_note_sha256: first})
    with db.scratch_database(server_url, name) as database_url, openai:
        stack = LocalStack(
            database_url=database_url,
            redis_url=redis_url,
            model=model,
            org_text=scenario.org_path().read_text(encoding="utf-8"),
            clock=clock,
            media=MediaSetup(openai_base_url=openai.base_url, openai_api_key="demo"),
        )
        with stack:
            say(f"pipeline up: bridge {stack.bridge_url}, gateway {stack.gateway.base_url}")
            phone = scenario.contact.phone
            for turn in scenario.turns:
                model.add(*(scripted_reply(step, {}) for step in turn.model))
                before = len(stack.gateway.sent)
                voiced = not webhook_ms
                for text_ in turn.texts():
                    started = time.perf_counter()
                    if not webhook_ms:
                        _send_voice_note(stack, phone, audio, scenario.contact.name, clock)
                    else:
                        result.transcript.append(("Cliente", text_))
                        say(f"\n👤 Cliente: {text_}")
                        stack.say(phone, text_, push_name=scenario.contact.name, timestamp=clock())
                    webhook_ms.append((time.perf_counter() - started) * 1000)
                stack.wait(_more_than(stack, before), timeout=120, what="the attendant's reply")
                if voiced:
                    heard = " ".join(_transcripts(database_url)) or "(nada)"
                    result.transcript.insert(0, ("Cliente", heard))
                    say(f"\n👤 Cliente (🎤 áudio de {VOICE_NOTE_S} s): {heard}")
                    say("   transcrito pelo worker em POST /audio/transcriptions (fake, offline)")
                for sent in stack.gateway.sent[before:]:
                    result.transcript.append(("Pet Feliz", sent.text))
                    say(f"🐾 Pet Feliz: {sent.text}")
            stack.wait(lambda: _settled(database_url) == len(webhook_ms),
                       what="every reply to be recorded as sent")  # fmt: skip
            result.transcribed_sha256 = [t.sha256 for t in openai.transcriptions]
            if spans is not None:
                result.trace_tree = _last_trace(stack, spans)
        result.stages = _stages(database_url, webhook_ms)
        zone = "America/Sao_Paulo"
        result.rows = _rows(database_url, zone)
    return result


def print_result(result: DemoResult, say: Print, *, traced: bool) -> None:
    """The time per stage, the rows written and (when `traced`) the last message's trace tree."""
    say("\nTime per stage (ms): webhook → stored · waiting (debounce, queue, media) · turn · send")
    for index, stage in enumerate(result.stages, start=1):
        say(
            f"  message {index}: {stage.webhook:7.1f} · {stage.queued:7.1f} · "
            f"{stage.turn:7.1f} · {stage.send:7.1f}"
        )
    say("\nRows written:")
    for table, lines in result.rows.items():
        say(f"  {table}:")
        for line in lines:
            say(f"    {line}")
    if not traced:
        say("\nNo trace tree: tracing is off (OTEL_SDK_DISABLED).")
    else:
        last = len(result.stages)
        say(f"\nTrace of message {last} (span names and durations, no content):")
        for line in result.trace_tree or ["(none sampled: see OTEL_TRACES_SAMPLER)"]:
            say(f"  {line}")
