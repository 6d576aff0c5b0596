"""Fair scheduling between organizations (issue 17): B's reply latency while A floods.

Two organizations share one system: the bridge (`zapvet bridge`) and one worker process (the
real `zapvet worker --processes 1`, CLI defaults), whose model is FakeOpenAIServer with a 2 s
latency through OPENAI_BASE_URL. examples/petfeliz.toml is applied twice, as organization B
(the example itself) and as organization A (another slug, name, Evolution instance and
webhook token), both with debounce 0; each has its own fake Evolution gateway. B's customers
write normally: each sends a message, waits for its reply, pauses 1–3 s, and writes again.
Run 1 (the baseline, same run): B alone for a fixed window. Run 2: the same B load while A
floods N messages from M contacts (round robin over the contacts, posted as fast as the
bridge takes them by a bounded number of senders); run 2's window ends when every message A
posted is answered (or at a cap), and A then drains to the end or to a time limit. A reply's
latency runs from the webhook's 200 to the reply at B's gateway, matched by the customer's
number. At the end the database's rows are counted against what the gateways received:
every message stored and answered, no reply sent twice (each model reply carries a serial).
Model requests in flight per organization come from their start times (each lasts 2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
import uvloop

from bench._harness import (
    API_KEY,
    INSTANCE,
    WEBHOOK_TOKEN,
    Child,
    _Sampler,
    apply_org,
    child_env,
    clear_namespace,
    fmt,
    free_port,
    machine,
    note,
    percentile,
    print_machine,
    scratch_database,
    serve_command,
    services,
    stop_on_sigterm,
    table,
    wait_http,
    workdir,
)
from bench._loadgen import Connection, Contacts, Webhooks
from bench.concurrency import _reset_peak
from bench.pipeline import Replies, _key
from zapvet import db
from zapvet.testing.gateways import FakeEvolutionAPI, SentText
from zapvet.testing.openai_server import FakeOpenAIServer, Reply

LATENCY_S = 2.0
#: Issue 17: B's p50 with A's flood within 1.5× of its unloaded figure.
TARGET_RATIO = 1.5
#: A hang guard, not a measurement.
REPLY_TIMEOUT_S = 600.0
PAUSE_S = (1.0, 3.0)


@dataclass(frozen=True)
class Org:
    label: str
    slug: str
    name: str
    instance: str
    token: str
    #: Area code and first digit of its customers' numbers (the last 8 digits tell A from B).
    ddd: int
    first: int

    @property
    def path(self) -> str:
        return f"/webhooks/evolution/{self.instance}"


FLOOD = Org("A", "enxurrada", "Pet Enxurrada (organização A)", "enxurrada", "hook-flood", 11, 1)
NORMAL = Org("B", "petfeliz", "Pet Feliz (organização B)", INSTANCE, WEBHOOK_TOKEN, 21, 2)


class Numbered(Contacts):
    """`count` distinct mobile numbers of one organization: 55 DDD 9 <first>000000i."""

    def __init__(self, org: Org, count: int) -> None:
        super().__init__(0)
        self.phones = [f"55{org.ddd}9{org.first * 10**7 + i:08d}" for i in range(count)]


class Sends:
    """Every text one fake gateway accepted: when, to whom (last 8 digits), what."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[tuple[float, str, str]] = []

    def on_send(self, sent: SentText) -> None:
        with self._lock:
            self.sent.append((time.perf_counter(), _key(sent.chat_id), sent.text))

    def count(self) -> int:
        with self._lock:
            return len(self.sent)

    def snapshot(self) -> list[tuple[float, str, str]]:
        with self._lock:
            return list(self.sent)


class Model:
    """FakeOpenAIServer's responder: every reply carries a serial; start times per org."""

    TAG = re.compile(r"\(#(\d+)\)")

    def __init__(self) -> None:
        self._serial = itertools.count(1)
        self.starts: list[tuple[float, str]] = []

    def respond(self, body: dict[str, Any]) -> Reply:
        messages = body.get("messages") or [{}]
        system = str(messages[0].get("content", "")) if isinstance(messages[0], dict) else ""
        org = FLOOD.label if FLOOD.name in system else NORMAL.label
        self.starts.append((time.perf_counter(), org))
        return Reply(f"Oi! Aqui é a loja {org} 🐾 Como posso ajudar? (#{next(self._serial)})")


def peak_in_flight(starts: list[tuple[float, str]], org: str, since: float, until: float) -> int:
    """Peak requests of `org` in flight in [since, until], each held LATENCY_S from its start."""
    times = sorted(at for at, who in starts if who == org and since - LATENCY_S < at <= until)
    peak, first = 0, 0
    for index, at in enumerate(times):
        while times[first] <= at - LATENCY_S:
            first += 1
        peak = max(peak, index - first + 1)
    return peak


class QueueDepth(_Sampler):
    """The inbound queue's length (messages no worker has fetched yet), every 100 ms."""

    def __init__(self, redis_url: str, key: str) -> None:
        super().__init__()
        self._client = redis.Redis.from_url(redis_url)
        self._key = key
        self.samples: list[tuple[float, int]] = []

    def sample(self) -> None:
        try:
            self.samples.append((time.perf_counter(), int(self._client.llen(self._key))))
        except redis.RedisError:
            return

    def peak(self, since: float, until: float) -> int:
        return max((n for at, n in self.samples if since <= at <= until), default=0)

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._client.close()


@dataclass
class BRun:
    """What B's customers saw in one window."""

    started: float = 0.0
    seconds: float = 0.0
    #: (seconds from the window's start at the 200, reply latency in seconds)
    turns: list[tuple[float, float]] = field(default_factory=list)
    webhook: list[float] = field(default_factory=list)
    accepted: int = 0
    refused: int = 0
    unanswered: int = 0
    peak: int = 0

    @property
    def latencies(self) -> list[float]:
        return [seconds for _, seconds in self.turns]


@dataclass
class Flood:
    """A's flood: the posting, and what was answered when."""

    contacts: int
    per_contact: int
    started: float = 0.0
    seconds: float = 0.0
    accepted: int = 0
    refused: int = 0
    dropped: int = 0
    answered_in_window: int = 0
    replies_in_window: int = 0
    window: float = 0.0
    drained_after: float | None = None
    last_reply: float = 0.0
    #: Drain jobs still in the inbound queue when A's last message was answered, and when
    #: (seconds from the flood's start) the queue was next empty.
    queued_when_answered: int = 0
    queue_empty_at: float | None = None


def _message_counts(database_url: str) -> dict[tuple[int, str, str], int]:
    """Messages per (organization, direction, status)."""
    sql = "SELECT organization_id, direction, status, count(*) FROM messages GROUP BY 1, 2, 3"
    with psycopg.connect(db.libpq_url(database_url), autocommit=True) as conn:
        rows = conn.execute(sql).fetchall()
    return {(int(org), str(d), str(s)): int(n) for org, d, s, n in rows}


def _open(counts: dict[tuple[int, str, str], int], org: int) -> int:
    """Messages of `org` still to answer or to send."""
    return sum(
        n
        for (who, direction, status), n in counts.items()
        if who == org
        and (
            (direction == "incoming" and status == "pending")
            or (direction == "outgoing" and status in ("pending", "sending"))
        )
    )


async def _customer(
    index: int,
    port: int,
    webhooks: Webhooks,
    replies: Replies,
    run: BRun,
    stop: asyncio.Event,
) -> None:
    rng = random.Random(index)
    connection = Connection(port, token=NORMAL.token)
    phone = webhooks.contacts.phones[index]
    try:
        # Customers start spread over the first pause, not all in the same millisecond.
        await asyncio.sleep(rng.uniform(0.0, PAUSE_S[1]))
        while not stop.is_set():
            waiting = replies.expect(phone)
            posted = time.perf_counter()
            status = await connection.post(NORMAL.path, webhooks.body(index))
            accepted = time.perf_counter()
            run.webhook.append(accepted - posted)
            if status != 200:
                run.refused += 1
                await asyncio.sleep(1.0)
                continue
            run.accepted += 1
            try:
                answered = await asyncio.wait_for(waiting, timeout=REPLY_TIMEOUT_S)
            except TimeoutError:
                run.unanswered += 1
                continue
            run.turns.append((accepted - run.started, answered - accepted))
            await asyncio.sleep(rng.uniform(*PAUSE_S))
    finally:
        await connection.close()


async def _play_b(
    port: int, webhooks: Webhooks, replies: Replies, customers: int, stop: asyncio.Event
) -> BRun:
    """B's customers write until `stop` is set; replies they wait for still count."""
    replies.loop = asyncio.get_running_loop()
    run = BRun(started=time.perf_counter())
    await asyncio.gather(
        *(_customer(i, port, webhooks, replies, run, stop) for i in range(customers))
    )
    return run


async def _warmup(port: int, webhooks: Webhooks, replies: Replies, count: int) -> int:
    """One message from each of B's first `count` customers: the worker connects and builds
    its graphs. Returns how many the bridge accepted."""
    replies.loop = asyncio.get_running_loop()

    async def one(index: int) -> int:
        connection = Connection(port, token=NORMAL.token)
        waiting = replies.expect(webhooks.contacts.phones[index])
        try:
            if await connection.post(NORMAL.path, webhooks.body(index)) != 200:
                return 0
        finally:
            await connection.close()
        await asyncio.wait_for(waiting, timeout=120)
        return 1

    return sum(await asyncio.gather(*(one(i) for i in range(count))))


async def _flood(port: int, webhooks: Webhooks, flood: Flood, senders: int) -> None:
    """Post every message of A's flood, round robin over its contacts, `senders` at a time;
    a refused post is retried after 1 s (as a gateway would), 10 times at most."""
    order = iter([c for _ in range(flood.per_contact) for c in range(flood.contacts)])

    async def sender() -> None:
        connection = Connection(port, token=FLOOD.token)
        try:
            for index in order:
                body = webhooks.body(index)
                for _attempt in range(11):
                    if await connection.post(FLOOD.path, body) == 200:
                        flood.accepted += 1
                        break
                    flood.refused += 1
                    await asyncio.sleep(1.0)
                else:
                    flood.dropped += 1
        finally:
            await connection.close()

    flood.started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    flood.seconds = time.perf_counter() - flood.started


async def _run2(
    port: int,
    webhooks_a: Webhooks,
    webhooks_b: Webhooks,
    replies: Replies,
    sends_a: Sends,
    flood: Flood,
    *,
    database_url: str,
    org_a: int,
    customers: int,
    senders: int,
    max_window: float,
    drain_limit: float,
) -> BRun:
    """B's load and A's flood together; B's window ends once A's flood is posted and
    answered, or at `max_window`. Then A drains, up to `drain_limit` seconds more."""
    stop = asyncio.Event()
    flooding = asyncio.create_task(_flood(port, webhooks_a, flood, senders))
    playing = asyncio.create_task(_play_b(port, webhooks_b, replies, customers, stop))
    await asyncio.sleep(0)
    started = time.perf_counter()
    while time.perf_counter() - started < max_window:
        await asyncio.sleep(1.0)
        if not flooding.done():
            continue
        counts = await asyncio.to_thread(_message_counts, database_url)
        if _open(counts, org_a) == 0:
            flood.drained_after = time.perf_counter() - flood.started
            break
    flood.window = time.perf_counter() - flood.started
    flood.replies_in_window = sends_a.count()
    counts = await asyncio.to_thread(_message_counts, database_url)
    flood.answered_in_window = counts.get((org_a, "incoming", "processed"), 0)
    stop.set()
    run = await playing
    run.seconds = flood.window
    await flooding
    deadline = time.perf_counter() + drain_limit
    while flood.drained_after is None and time.perf_counter() < deadline:
        counts = await asyncio.to_thread(_message_counts, database_url)
        if _open(counts, org_a) == 0:
            flood.drained_after = time.perf_counter() - flood.started
            break
        await asyncio.sleep(1.0)
    sent = sends_a.snapshot()
    flood.last_reply = max((at for at, _, _ in sent), default=flood.started) - flood.started
    return run


@dataclass
class Outcome:
    baseline: BRun
    loaded: BRun
    flood: Flood
    counts: dict[tuple[int, str, str], int]
    orgs: dict[str, int]
    accepted: dict[str, int]
    sends: dict[str, list[tuple[float, str, str]]]
    contacts: dict[str, int]
    model: Model
    depth: list[tuple[float, int]]
    peak_queue: tuple[int, int]
    threads: str


def run(
    *,
    database_url: str,
    redis_url: str,
    work: Path,
    customers: int,
    contacts: int,
    per_contact: int,
    senders: int,
    baseline_seconds: float,
    max_window: float,
    drain_limit: float,
    threads: int | None,
) -> Outcome:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    replies = Replies()
    sends = {FLOOD.label: Sends(), NORMAL.label: Sends()}

    def on_send_b(sent: SentText) -> None:
        sends[NORMAL.label].on_send(sent)
        replies.on_send(sent)

    gateway_a = FakeEvolutionAPI(
        api_key=API_KEY, instances=[FLOOD.instance], on_send=sends[FLOOD.label].on_send
    )
    gateway_b = FakeEvolutionAPI(api_key=API_KEY, instances=[NORMAL.instance], on_send=on_send_b)
    model = Model()
    server = FakeOpenAIServer(latency=LATENCY_S, responder=model.respond)
    for fake in (gateway_a, gateway_b, server):
        fake.start()
    orgs = {
        org.label: apply_org(
            database_url,
            api_url=gateway.base_url,
            debounce_seconds=0,
            slug=org.slug,
            name=org.name,
            instance=org.instance,
            webhook_token=org.token,
        )
        for org, gateway in ((FLOOD, gateway_a), (NORMAL, gateway_b))
    }
    env = child_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ZAPVET_QUEUE_NAMESPACE=namespace,
        OPENAI_API_KEY="sk-bench",
        OPENAI_BASE_URL=server.base_url,
    )
    port = free_port()
    stats = work / "fairness"
    stats.mkdir()
    worker_command = [sys.executable, "-m", "zapvet.cli", "worker", "--processes", "1"]
    if threads is not None:
        worker_command += ["--threads", str(threads)]
    worker = Child(worker_command, env=env, log=work / "worker.log")
    bridge = Child(
        serve_command("bridge", "--port", str(port), "--stats-dir", str(stats)),
        env=env,
        log=work / "bridge.log",
    )
    webhooks_a = Webhooks(
        Numbered(FLOOD, contacts), run=f"{namespace[-5:]}A", instance=FLOOD.instance
    )
    webhooks_b = Webhooks(Numbered(NORMAL, customers), run=f"{namespace[-5:]}B")
    flood = Flood(contacts=contacts, per_contact=per_contact)
    try:
        worker.start()
        bridge.start()
        wait_http(f"http://127.0.0.1:{port}/healthz", child=bridge)
        with (
            asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
            QueueDepth(redis_url, f"{namespace}:inbound") as depth,
        ):
            warm = runner.run(_warmup(port, webhooks_b, replies, min(5, customers)))

            async def baseline() -> BRun:
                stop = asyncio.Event()
                started = time.perf_counter()
                playing = asyncio.create_task(_play_b(port, webhooks_b, replies, customers, stop))
                await asyncio.sleep(baseline_seconds)
                stop.set()
                found = await playing
                found.seconds = time.perf_counter() - started
                return found

            _reset_peak(server)
            before = runner.run(baseline())
            before.peak = server.peak_in_flight
            queue_before = depth.peak(before.started, before.started + before.seconds)
            _reset_peak(server)
            loaded = runner.run(
                _run2(
                    port,
                    webhooks_a,
                    webhooks_b,
                    replies,
                    sends[FLOOD.label],
                    flood,
                    database_url=database_url,
                    org_a=orgs[FLOOD.label],
                    customers=customers,
                    senders=senders,
                    max_window=max_window,
                    drain_limit=drain_limit,
                )
            )
            loaded.peak = server.peak_in_flight
            # The queue is sampled until the end: give it the drain limit to empty.
            answered_at = flood.started + (flood.drained_after or flood.window)
            deadline = time.perf_counter() + drain_limit
            while time.perf_counter() < deadline and not any(
                n == 0 for at, n in depth.samples if at > answered_at
            ):
                time.sleep(0.5)
            later = [(at, n) for at, n in depth.samples if at >= answered_at]
            flood.queued_when_answered = later[0][1] if later else 0
            flood.queue_empty_at = next((at - flood.started for at, n in later if n == 0), None)
            queue_loaded = depth.peak(flood.started, flood.started + flood.window)
            samples = list(depth.samples)
        time.sleep(0.5)  # the last sends are marked sent after the gateway answered
        counts = _message_counts(database_url)
    finally:
        bridge.stop()
        worker.stop(timeout=60)
        for fake in (server, gateway_a, gateway_b):
            fake.stop()
        clear_namespace(redis_url, namespace)
    accepted = {
        FLOOD.label: flood.accepted,
        NORMAL.label: warm + before.accepted + loaded.accepted,
    }
    return Outcome(
        baseline=before,
        loaded=loaded,
        flood=flood,
        counts=counts,
        orgs=orgs,
        accepted=accepted,
        sends={label: s.snapshot() for label, s in sends.items()},
        contacts={FLOOD.label: contacts, NORMAL.label: customers},
        model=model,
        depth=samples,
        peak_queue=(queue_before, queue_loaded),
        threads=str(threads) if threads is not None else "CLI default",
    )


def _p(values: list[float], q: float) -> float:
    return percentile(values, q)


def report(found: Outcome) -> None:
    base, loaded, flood = found.baseline, found.loaded, found.flood
    p50 = [_p(r.latencies, 50) for r in (base, loaded)]
    p99 = [_p(r.latencies, 99) for r in (base, loaded)]
    ratio50 = p50[1] / p50[0] if p50[0] else 0.0
    ratio99 = p99[1] / p99[0] if p99[0] else 0.0
    verdict = "meets" if ratio50 <= TARGET_RATIO else "**fails**"
    starts = found.model.starts
    rows = []
    for label, r, queue, ratio in (
        ("1. B alone (baseline)", base, found.peak_queue[0], "1.00 / 1.00"),
        (
            "2. B while A floods",
            loaded,
            found.peak_queue[1],
            f"**{ratio50:.2f}** / {ratio99:.2f}",
        ),
    ):
        since, until = r.started, r.started + r.seconds
        rows.append(
            [
                label,
                f"{r.seconds:.0f}",
                len(r.turns),
                f"{_p(r.latencies, 50):.2f} / {_p(r.latencies, 99):.2f}",
                ratio,
                f"{_p(r.webhook, 50) * 1000:.0f} / {_p(r.webhook, 99) * 1000:.0f}",
                f"{r.peak} ({peak_in_flight(starts, FLOOD.label, since, until)} / "
                f"{peak_in_flight(starts, NORMAL.label, since, until)})",
                queue,
                f"{r.unanswered} / {r.refused}",
            ]
        )
    table(
        f"Fair scheduling: organization B's {found.contacts['B']} customers, without and with "
        f"A's flood (one worker process, {found.threads} threads, model latency "
        f"{LATENCY_S:.0f} s)",
        [
            "run",
            "window s",
            "B replies",
            "B reply p50 / p99 s",
            "÷ B alone p50 / p99",
            "B webhook p50 / p99 ms",
            "model peak in flight (A / B)",
            "peak inbound queue",
            "B unanswered / non-200",
        ],
        rows,
    )
    note(
        f"Target (issue 17): B's p50 with the flood within {TARGET_RATIO}× of B alone: "
        f"{verdict} ({ratio50:.2f}×)."
    )
    sent_a = found.sends[FLOOD.label]
    total = flood.contacts * flood.per_contact
    drained = (
        f"all answered {flood.drained_after:.0f} s after the flood began"
        if flood.drained_after is not None
        else "**not drained** in the time limit"
    )
    processed = found.counts.get((found.orgs[FLOOD.label], "incoming", "processed"), 0)
    table(
        f"Organization A's flood: {fmt(total)} messages from {fmt(flood.contacts)} contacts",
        ["figure", "value"],
        [
            ["posted", f"{fmt(flood.accepted)} accepted in {flood.seconds:.1f} s "
             f"({flood.accepted / max(flood.seconds, 1e-9):.0f}/s); non-200 retried "
             f"{flood.refused}, given up {flood.dropped}"],
            ["answered in B's window", f"{fmt(flood.answered_in_window)} of "
             f"{fmt(flood.accepted)} messages, {fmt(flood.replies_in_window)} replies "
             f"in {flood.window:.0f} s"],
            ["A's throughput in the window", f"{flood.replies_in_window / flood.window:.1f} "
             f"replies/s, {flood.answered_in_window / flood.window:.1f} messages answered/s"],
            ["to the end", f"{drained}: {fmt(processed)} messages answered with "
             f"{fmt(len(sent_a))} replies, the last at {flood.last_reply:.0f} s "
             f"({len(sent_a) / max(flood.last_reply, 1e-9):.1f} replies/s)"],
            ["inbound queue when A's last message was answered",
             f"{fmt(flood.queued_when_answered)} drain jobs still queued, empty at "
             + (f"{flood.queue_empty_at:.0f} s" if flood.queue_empty_at is not None
                else "(not within the drain limit)")],
        ],
    )  # fmt: skip
    _timeline(found)
    _exactly_once(found)


def _timeline(found: Outcome) -> None:
    """B's latency and A's replies slice by slice of run 2's window."""
    loaded = found.loaded
    slices = 8
    width = max(loaded.seconds / slices, 1.0)
    digits = 0 if width >= 10 else 1
    sent_a = [at for at, _, _ in found.sends[FLOOD.label]]
    rows = []
    for index in range(slices):
        low, high = index * width, (index + 1) * width
        latencies = [s for at, s in loaded.turns if low <= at < high]
        since, until = loaded.started + low, loaded.started + high
        rows.append(
            [
                f"{low:.{digits}f}–{high:.{digits}f}",
                len(latencies),
                f"{_p(latencies, 50):.2f} / {_p(latencies, 99):.2f}" if latencies else "-",
                sum(1 for at in sent_a if since <= at < until),
                max((n for at, n in found.depth if since <= at < until), default=0),
                f"{peak_in_flight(found.model.starts, FLOOD.label, since, until)} / "
                f"{peak_in_flight(found.model.starts, NORMAL.label, since, until)}",
            ]
        )
    table(
        "Run 2 over time (B's messages by when they were accepted)",
        [
            "seconds",
            "B messages",
            "B reply p50 / p99 s",
            "A replies",
            "peak inbound queue",
            "model in flight A / B",
        ],
        rows,
    )


def _exactly_once(found: Outcome) -> None:
    rows = []
    for org in (FLOOD, NORMAL):
        org_id = found.orgs[org.label]
        counts = {(d, s): n for (who, d, s), n in found.counts.items() if who == org_id}
        stored = sum(n for (d, _), n in counts.items() if d == "incoming")
        processed = counts.get(("incoming", "processed"), 0)
        pending = counts.get(("incoming", "pending"), 0)
        other_in = stored - processed - pending
        outgoing = sum(n for (d, _), n in counts.items() if d == "outgoing")
        out_sent = counts.get(("outgoing", "sent"), 0)
        sent = found.sends[org.label]
        tags = [m.group(1) for _, _, text in sent if (m := Model.TAG.search(text))]
        duplicates = len(tags) - len(set(tags))
        untagged = len(sent) - len(tags)
        answered_contacts = len({who for _, who, _ in sent})
        lost = found.accepted[org.label] - processed - pending
        if lost or duplicates or other_in:
            verdict = f"**no**: {lost} lost, {duplicates} duplicates, {other_in} other"
        elif pending:
            verdict = f"0 lost so far, 0 duplicates; {pending} still pending"
        else:
            verdict = "yes"
        rows.append(
            [
                org.label,
                fmt(found.accepted[org.label]),
                fmt(stored),
                fmt(processed),
                f"{pending} / {other_in}",
                f"{fmt(answered_contacts)} of {fmt(found.contacts[org.label])}",
                f"{fmt(len(sent))} ({untagged} not from the model)",
                f"{fmt(out_sent)} of {fmt(outgoing)}",
                duplicates,
                verdict,
            ]
        )
    table(
        "Every message answered exactly once (database rows against the gateways' sends)",
        [
            "org",
            "posted (200)",
            "stored",
            "answered",
            "left pending / other status",
            "contacts answered",
            "replies at gateway",
            "outgoing rows sent",
            "duplicate replies",
            "0 lost, 0 duplicates",
        ],
        rows,
    )
    note(
        "A batch of a conversation's pending messages gets one reply, so replies ≤ messages; "
        "a duplicate is a model reply (serial-numbered) that reached the gateway twice. "
        f"Model in flight per organization: requests started within {LATENCY_S:.0f} s of "
        "each other. Inbound queue: drain jobs no worker has fetched yet (Redis LLEN)."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fairness", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1,000 flood messages from 100 contacts, 20 B customers, 20 s baseline, "
        "60 s cap (about a minute)",
    )
    parser.add_argument("--customers", type=int, default=50, help="B's customers")
    parser.add_argument("--contacts", type=int, default=500, help="A's flooding contacts")
    parser.add_argument("--per-contact", type=int, default=10, help="messages per A contact")
    parser.add_argument("--senders", type=int, default=32, help="A's concurrent posts")
    parser.add_argument("--baseline", type=float, default=60.0, help="run 1 window, seconds")
    parser.add_argument("--max-window", type=float, default=240.0, help="run 2 window cap, seconds")
    parser.add_argument(
        "--drain-limit", type=float, default=300.0, help="seconds A may drain after run 2"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="worker threads (default: the CLI's default)"
    )
    parser.add_argument("--no-machine", action="store_true", help="do not print machine info")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    if args.quick:
        args.customers, args.contacts, args.per_contact = 20, 100, 10
        args.baseline, args.max_window, args.drain_limit = 20.0, 60.0, 90.0
    with (
        services() as urls,
        scratch_database(urls.database_url, "fairness") as database_url,
        workdir() as tmp,
    ):
        if not args.no_machine:
            print_machine(machine(urls))
        found = run(
            database_url=database_url,
            redis_url=urls.redis_url,
            work=Path(tmp),
            customers=args.customers,
            contacts=args.contacts,
            per_contact=args.per_contact,
            senders=args.senders,
            baseline_seconds=args.baseline,
            max_window=args.max_window,
            drain_limit=args.drain_limit,
            threads=args.threads,
        )
        report(found)
        note(
            f"Run 1: B's customers alone for {found.baseline.seconds:.0f} s. Run 2: the same "
            f"load while A posts its flood; its window ends when A's flood is answered (or at "
            f"the cap), then A drains. Latency: webhook 200 → reply at B's gateway. Debounce 0; "
            f"B's customers pause {PAUSE_S[0]:.0f}–{PAUSE_S[1]:.0f} s between replies and "
            f"messages."
        )


if __name__ == "__main__":
    main()
