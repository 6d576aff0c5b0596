"""Scale curve: how a turn's database work grows with history, appointments and organizations.

Measures, on a scratch database of a real PostgreSQL server, the median wall time of
repeated calls of the real code paths and reports each as a ratio to the smallest size:

* history: `load_history` alone, and a whole client turn (history + prepare + a zero-latency
  scripted model + finalize) for conversations of 10 / 100 / 1,000 messages;
* appointments in one organization (100 … 100,000, past and future, several resources,
  realistic statuses): the client tools `check_availability` and `book_appointment` and
  Aurora's `business_summary` (one day and 30 days), called as the model calls them;
* organizations (1 … 1,000, each with its own catalogue, contacts and appointments): the
  same calls for one organization.

Every SELECT (and the booking INSERT, rolled back) the calls issue is re-run under
EXPLAIN (ANALYZE, BUFFERS) to show which scans the plans use and how many buffers they touch.
Rows are written with COPY. Run `python -m bench.scale --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import statistics
import sys
import time as clock
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.prebuilt import ToolRuntime
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine

from zapvet import db
from zapvet.config import load_settings
from zapvet.embedded import running_services
from zapvet.graphs.client.graph import build_graph
from zapvet.graphs.history import load_history
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.llm.tokens import count_message_tokens
from zapvet.logging import setup_logging
from zapvet.tools.aurora import make_aurora_tools
from zapvet.tools.client import make_client_tools
from zapvet.tools.context import AuroraContext, ClientContext
from zapvet.tools.deps import ToolDeps

ZONE = ZoneInfo("America/Sao_Paulo")
#: A Wednesday afternoon: "tomorrow" (the day checked and booked) is a full working day.
NOW = datetime(2026, 11, 25, 14, 0, tzinfo=ZONE)
TOMORROW = NOW.date() + timedelta(days=1)
SERVICES = [  # name, category, minutes, cents (the example pet shop's catalogue)
    ("Banho", "banho", 60, 5000),
    ("Tosa Completa", "tosa", 90, 9000),
    ("Tosa Higiênica", "tosa", 45, 4500),
    ("Consulta Veterinária Geral", "consulta", 30, 12000),
    ("Vacina V10", "vacina", 15, 9500),
    ("Vacina Antirrábica", "vacina", 15, 7000),
]
RESOURCES = [
    ("Carla", {"banho", "tosa"}),
    ("Marcos", {"banho", "tosa"}),
    ("Julia", {"banho", "tosa"}),
    ("Dra. Ana", {"consulta", "vacina"}),
]
HOURS = {d: [(time(8), time(12)), (time(13), time(18))] for d in range(5)} | {
    5: [(time(8), time(13))]
}
CLOSURES = [date(2026, 12, 25), date(2027, 1, 1)]
FILL = 0.7  # share of grid steps that carry an appointment
FUTURE_DAYS = 45  # bookings reach this far ahead; older history grows without bound
PAST_STATUSES = (["completed"] * 82, ["cancelled"] * 8, ["no_show"] * 6, ["scheduled"] * 4)
FUTURE_STATUSES = (["scheduled"] * 65, ["confirmed"] * 28, ["cancelled"] * 7)
LINES = [
    "Oi, boa tarde! Queria saber se tem horário para banho amanhã",
    "Tem sim! Amanhã temos 09:00, 10:00 e 14:00. Qual prefere?",
    "Pode ser às 10h, é para o Rex",
    "Prontinho, o banho do Rex está agendado para amanhã às 10:00 (R$ 50,00).",
    "Obrigada! Ele precisa de vacina também?",
    "A V10 é anual; posso ver um horário com a Dra. Ana se quiser.",
]
#: Tables that grow with the sizes measured: their scans are shown in the plan tables.
GROWING = {"appointments", "contacts", "pets", "messages", "conversations", "services", "resources",
           "resource_services"}  # fmt: skip


def flatten(groups: tuple[list[str], ...]) -> list[str]:
    return [item for group in groups for item in group]


# -- seeding ---------------------------------------------------------------------------------


@dataclass
class Ids:
    """Next free primary key per table; ids are assigned here so COPY can link rows."""

    next: dict[str, int] = field(default_factory=dict)

    def take(self, table: str) -> int:
        value = self.next.get(table, 1)
        self.next[table] = value + 1
        return value


@dataclass
class Rows:
    """Rows to COPY, per table, with their column lists."""

    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    data: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def add(self, table: str, columns: tuple[str, ...], row: tuple[Any, ...]) -> None:
        self.columns.setdefault(table, columns)
        self.data.setdefault(table, []).append(row)


@dataclass(frozen=True)
class Seeded:
    """The ids the measurements need, in the organization under test."""

    org_id: int
    contact_id: int
    conversation_id: int
    owner_number_id: int
    owner_conversation_id: int
    history: dict[int, int]  # conversation length → conversation id


def open_days(count: int) -> Iterator[date]:
    """Days around NOW, nearest first, future capped at FUTURE_DAYS, skipping closed days."""
    given = 0
    offsets = [1, 0]
    step = 1
    while True:
        offsets += [-step] + ([step + 1] if step + 1 <= FUTURE_DAYS else [])
        for offset in offsets:
            day = NOW.date() + timedelta(days=offset)
            if HOURS.get(day.weekday()) and day not in CLOSURES:
                yield day
                given += 1
                if given >= count:
                    return
        offsets = []
        step += 1


def seed_org(rows: Rows, ids: Ids, index: int, appointments: int, rng: random.Random) -> Seeded:
    """One organization: catalogue, hours, contacts with pets, `appointments` appointments."""
    org_id = ids.take("organizations")
    rows.add(
        "organizations",
        ("id", "slug", "name", "timezone", "slot_minutes", "min_lead_minutes",
         "booking_horizon_days"),
        (org_id, f"bench-{index}", f"Pet Shop {index}", ZONE.key, 30, 60, 60),
    )  # fmt: skip
    for weekday, intervals in HOURS.items():
        for opens, closes in intervals:
            rows.add(
                "business_hours",
                ("id", "organization_id", "weekday", "opens_at", "closes_at"),
                (ids.take("business_hours"), org_id, weekday, opens, closes),
            )
    for day in CLOSURES:
        rows.add("closures", ("id", "organization_id", "date"), (ids.take("closures"), org_id, day))
    services: list[tuple[int, str, int, int]] = []
    for name, category, minutes, cents in SERVICES:
        service_id = ids.take("services")
        services.append((service_id, category, minutes, cents))
        rows.add(
            "services",
            ("id", "organization_id", "name", "category", "duration_minutes", "price_cents",
             "is_active"),
            (service_id, org_id, name, category, minutes, cents, True),
        )  # fmt: skip
    resources: list[tuple[int, list[tuple[int, str, int, int]]]] = []
    for name, categories in RESOURCES:
        resource_id = ids.take("resources")
        rows.add(
            "resources",
            ("id", "organization_id", "name", "capacity", "is_active", "booking_seq"),
            (resource_id, org_id, name, 1, True, 0),
        )
        performs = [s for s in services if s[1] in categories]
        resources.append((resource_id, performs))
        for service in performs:
            rows.add(
                "resource_services",
                ("organization_id", "resource_id", "service_id"),
                (org_id, resource_id, service[0]),
            )
    contacts: list[tuple[int, list[int]]] = []
    for number in range(max(20, appointments // 8)):
        contact_id = ids.take("contacts")
        opted_out = NOW - timedelta(days=rng.randrange(1, 400)) if rng.random() < 0.03 else None
        rows.add(
            "contacts",
            ("id", "organization_id", "phone", "name", "status", "last_contact_at",
             "opted_out_at"),
            (contact_id, org_id, f"55119{index:04d}{number:04d}", f"Cliente {number}", "active",
             NOW - timedelta(days=rng.randrange(0, 700)), opted_out),
        )  # fmt: skip
        pets = []
        for pet in range(1 if rng.random() < 0.7 else 2):
            pet_id = ids.take("pets")
            name = "Rex" if number == 0 and pet == 0 else f"Pet {number}-{pet}"
            rows.add(
                "pets",
                ("id", "organization_id", "contact_id", "name", "species", "breed", "age_years"),
                (pet_id, org_id, contact_id, name, rng.choice(["cachorro", "gato"]), None,
                 rng.randrange(0, 16)),
            )  # fmt: skip
            pets.append(pet_id)
        contacts.append((contact_id, pets))
    past, future = flatten(PAST_STATUSES), flatten(FUTURE_STATUSES)
    made = 0
    for day in open_days(10**6):
        for resource_id, performs in resources:
            for opens, closes in HOURS[day.weekday()]:
                wall = datetime.combine(day, opens, tzinfo=ZONE)
                close = datetime.combine(day, closes, tzinfo=ZONE)
                while made < appointments:
                    service_id, _, minutes, cents = rng.choice(performs)
                    start, end = wall, wall + timedelta(minutes=minutes)
                    if end > close:
                        break
                    wall += timedelta(minutes=30 * -(-minutes // 30))
                    if rng.random() >= FILL:
                        continue
                    contact_id, pets = contacts[rng.randrange(len(contacts))]
                    status = rng.choice(past if start < NOW else future)
                    cancelled = start - timedelta(days=1) if status == "cancelled" else None
                    rows.add(
                        "appointments",
                        ("id", "organization_id", "contact_id", "pet_id", "service_id",
                         "resource_id", "starts_at", "ends_at", "status", "price_cents",
                         "source", "cancelled_at"),
                        (ids.take("appointments"), org_id, contact_id, rng.choice(pets),
                         service_id, resource_id, start.astimezone(UTC), end.astimezone(UTC),
                         status, cents, "import", cancelled),
                    )  # fmt: skip
                    made += 1
        if made >= appointments:
            break
    owner_id = ids.take("aurora_owner_numbers")
    rows.add(
        "aurora_owner_numbers",
        ("id", "organization_id", "name", "phone", "phone_key", "is_active"),
        (owner_id, org_id, "Dono", f"55119{index:04d}9999", f"5511{index:04d}9999", True),
    )
    owner_contact = ids.take("contacts")
    rows.add(
        "contacts",
        ("id", "organization_id", "phone", "name", "status", "last_contact_at", "opted_out_at"),
        (owner_contact, org_id, f"55119{index:04d}9999", "Dono", "active", NOW, None),
    )
    conversations = [contacts[0][0], owner_contact]
    conversation_ids = []
    for contact_id in conversations:
        conversation_ids.append(ids.take("conversations"))
        rows.add(
            "conversations",
            ("id", "organization_id", "contact_id", "status"),
            (conversation_ids[-1], org_id, contact_id, "active"),
        )
    return Seeded(
        org_id=org_id,
        contact_id=contacts[0][0],
        conversation_id=conversation_ids[0],
        owner_number_id=owner_id,
        owner_conversation_id=conversation_ids[1],
        history={},
    )


def seed_history(rows: Rows, ids: Ids, seeded: Seeded, lengths: list[int]) -> Seeded:
    """One conversation per length, on the org's 2nd, 3rd… contacts; the last message waits."""
    history = {}
    first_contact = seeded.contact_id
    for offset, length in enumerate(lengths, start=1):
        conversation_id = ids.take("conversations")
        rows.add(
            "conversations",
            ("id", "organization_id", "contact_id", "status"),
            (conversation_id, seeded.org_id, first_contact + offset, "active"),
        )
        for number in range(length):
            incoming = number % 2 == 0 or number == length - 1
            at = NOW - timedelta(minutes=length - number)
            rows.add(
                "messages",
                ("id", "organization_id", "conversation_id", "whatsapp_message_id",
                 "direction", "content", "message_type", "from_me", "sent_by_ai", "status",
                 "message_at", "attempts"),
                (ids.take("messages"), seeded.org_id, conversation_id,
                 f"wamid.{conversation_id}.{number}", "incoming" if incoming else "outgoing",
                 LINES[number % len(LINES)], "text", not incoming, not incoming,
                 "pending" if number == length - 1 else ("processed" if incoming else "sent"),
                 at.astimezone(UTC), 0),
            )  # fmt: skip
        history[length] = conversation_id
    return Seeded(**{**seeded.__dict__, "history": history})


def copy_rows(conninfo: str, rows: Rows, ids: Ids) -> None:
    """COPY every table (parents first), then move the id sequences past the ids used."""
    order = [
        "organizations", "business_hours", "closures", "services", "resources",
        "resource_services", "contacts", "pets", "aurora_owner_numbers", "conversations",
        "messages", "appointments",
    ]  # fmt: skip
    with psycopg.connect(conninfo) as conn:
        # Rows are valid by construction (no overlaps, same-org references): skip the
        # per-row capacity trigger and foreign-key checks while loading.
        conn.execute("SET session_replication_role = replica")
        for table in order:
            if not rows.data.get(table):
                continue
            columns = ", ".join(rows.columns[table])
            with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows.data[table]:
                    copy.write_row(row)
        for table, value in ids.next.items():
            conn.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, false)", (table, value)
            )
        conn.execute("SET session_replication_role = origin")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Capture:
    """The SQL statements the async engine sends while `on` is set."""

    on: bool = False
    statements: list[tuple[str, Any]] = field(default_factory=list)

    def install(self, engine: AsyncEngine) -> None:
        def record(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
            if self.on:
                self.statements.append((statement, params))

        event.listen(engine.sync_engine, "before_cursor_execute", record)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def plan_summary(plan: dict[str, Any]) -> dict[str, Any]:
    """Scans on the tables that grow, buffers touched, execution and trigger time."""
    root = plan["Plan"]
    scans = []
    for node in _nodes(root):
        table = node.get("Relation Name")
        if table in GROWING:
            used = [node.get("Index Name")] + [
                n.get("Index Name") for n in _nodes(node) if n["Node Type"] == "Bitmap Index Scan"
            ]
            how = " ".join([node["Node Type"], *(name for name in used if name)])
            removed = node.get("Rows Removed by Filter", 0) + node.get(
                "Rows Removed by Index Recheck", 0
            )
            rows = node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
            scans.append(f"{table}: {how} (rows {rows}, filtered {removed})")
    tables = sorted({n["Relation Name"] for n in _nodes(root) if n.get("Relation Name")})
    return {
        "tables": tables,
        "scans": scans,
        "buffers": root.get("Shared Hit Blocks", 0) + root.get("Shared Read Blocks", 0),
        "ms": round(plan.get("Execution Time", 0.0), 3),
        "triggers": {
            t["Trigger Name"]: round(t["Time"], 3)
            for t in plan.get("Triggers", [])
            if not t["Trigger Name"].startswith("RI_")  # foreign-key checks: primary key probes
        },
    }


def explain(engine: Engine, statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) each captured SELECT or INSERT, rolled back afterwards."""
    found = []
    with engine.connect() as conn:
        for statement, params in statements:
            verb = statement.lstrip().split(None, 1)[0].upper()
            if verb not in {"SELECT", "INSERT"}:
                continue
            result = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params
            )
            (plan,) = result.scalar_one()
            found.append({"verb": verb, **plan_summary(plan)})
        conn.rollback()
    return found


WARMUP = 5
Call = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Probe:
    """One measured call; `after` undoes its effect, untimed (a booking is deleted)."""

    call: Call
    after: Callable[[Any], Awaitable[None]] | None = None


@dataclass
class Database:
    """A scratch database: an async engine for the code under test, a sync one for plans."""

    url: str
    engine: AsyncEngine
    plans: Engine
    capture: Capture

    @property
    def conninfo(self) -> str:
        return db.libpq_url(self.url)

    @property
    def deps(self) -> ToolDeps:
        return ToolDeps(sessions=db.async_session_maker(self.engine), clock=lambda: NOW)


@asynccontextmanager
async def databases(server_url: str, revision: str, count: int) -> AsyncIterator[list[Database]]:
    """`count` databases migrated to `revision`, dropped afterwards."""
    names = [f"zapvet_bench_scale_{os.getpid()}_{n}" for n in range(count)]
    made: list[Database] = []
    try:
        for name in names:
            url = db.create_database(server_url, name)
            db.upgrade(url, revision)
            made.append(
                Database(
                    url=url,
                    engine=db.build_async_engine(url, pool_size=2),
                    plans=db.build_engine(url, pool_size=1),
                    capture=Capture(),
                )
            )
            made[-1].capture.install(made[-1].engine)
        yield made
    finally:
        for database in made:
            await database.engine.dispose()
            database.plans.dispose()
        for name in names:
            db.drop_database(server_url, name)


def load(database: Database, organizations: list[int], history: Sequence[int] = ()) -> Seeded:
    """Seed one organization per entry (its appointment count); return the first one's ids."""
    rows, ids = Rows(), Ids()
    started = clock.perf_counter()
    seeded = [
        seed_org(rows, ids, index, count, random.Random(index * 1_000_003 + count))
        for index, count in enumerate(organizations, start=1)
    ]
    first = seed_history(rows, ids, seeded[0], list(history)) if history else seeded[0]
    copy_rows(database.conninfo, rows, ids)
    total = sum(organizations)
    log(f"seeded {len(organizations):,} organizations, {total:,} appointments "
        f"in {clock.perf_counter() - started:.1f} s")  # fmt: skip
    return first


async def round_robin(probes: dict[int, Probe], repeat: int) -> dict[int, float]:
    """Median ms per size; sizes take turns call by call, so load changes hit them alike."""
    times: dict[int, list[float]] = {size: [] for size in probes}
    for attempt in range(repeat + WARMUP):
        for size, probe in probes.items():
            started = clock.perf_counter()
            outcome = await probe.call()
            elapsed = clock.perf_counter() - started
            if probe.after is not None:
                await probe.after(outcome)
            if attempt >= WARMUP:
                times[size].append(elapsed * 1000)
    return {size: statistics.median(found) for size, found in times.items()}


async def plans(database: Database, probe: Probe) -> list[dict[str, Any]]:
    """The plans of the statements one more call sends."""
    database.capture.statements.clear()
    database.capture.on = True
    try:
        outcome = await probe.call()
    finally:
        database.capture.on = False
    statements = list(database.capture.statements)
    if probe.after is not None:
        await probe.after(outcome)
    return explain(database.plans, statements)


Curve = dict[int, dict[str, tuple[float, list[dict[str, Any]]]]]


async def measure(sized: dict[int, tuple[Database, dict[str, Probe]]], repeat: int) -> Curve:
    """Every probe at every size: round-robin medians, then one call's plans."""
    keys = list(next(iter(sized.values()))[1])
    curve: Curve = {size: {} for size in sized}
    for key in keys:
        probes_now = {size: probes[key] for size, (_, probes) in sized.items()}
        medians = await round_robin(probes_now, repeat)
        for size, (database, probes) in sized.items():
            curve[size][key] = (medians[size], await plans(database, probes[key]))
        log(f"measured {key}")
    return curve


def runtime(context: Any) -> ToolRuntime[Any, Any]:
    return ToolRuntime(
        state={"messages": []},
        context=context,
        config={},
        stream_writer=lambda _chunk: None,
        tool_call_id="bench",
        store=None,
    )


def by_name(tools: list[BaseTool], name: str) -> Callable[..., Awaitable[Any]]:
    """The tool's own coroutine: called with its arguments and the runtime ToolNode injects."""
    tool = next(t for t in tools if t.name == name)
    assert isinstance(tool, StructuredTool) and tool.coroutine is not None
    return tool.coroutine


async def tool_probes(database: Database, seeded: Seeded) -> dict[str, Probe]:
    """The calls of the appointment and organization curves, as the model makes them."""
    deps = database.deps
    client, aurora = make_client_tools(deps), make_aurora_tools(deps)
    client_rt = runtime(
        ClientContext(
            organization_id=seeded.org_id,
            contact_id=seeded.contact_id,
            conversation_id=seeded.conversation_id,
        )
    )
    owner_rt = runtime(
        AuroraContext(
            organization_id=seeded.org_id,
            owner_number_id=seeded.owner_number_id,
            contact_id=seeded.contact_id,
            conversation_id=seeded.owner_conversation_id,
        )
    )
    check, book = by_name(client, "check_availability"), by_name(client, "book_appointment")
    summary = by_name(aurora, "business_summary")
    free = json.loads(await check(date=f"{TOMORROW}", service_type="Consulta", runtime=client_rt))
    times = [t for period in free["slots"]["Consulta Veterinária Geral"].values() for t in period]
    if not times:
        raise RuntimeError("no free consultation tomorrow to book")

    async def cancel(outcome: str) -> None:
        appointment_id = json.loads(outcome)["appointment_id"]
        with psycopg.connect(database.conninfo, autocommit=True) as conn:
            conn.execute("DELETE FROM appointments WHERE id = %s", (appointment_id,))

    today, month_start = f"{NOW.date()}", f"{NOW.date() - timedelta(days=29)}"
    return {
        "check_availability": Probe(
            lambda: check(date=f"{TOMORROW}", service_type="Banho", runtime=client_rt)
        ),
        "book_appointment": Probe(
            lambda: book(
                pet_name="Rex",
                service_type="Consulta Veterinária Geral",
                preferred_date=f"{TOMORROW}",
                preferred_time=times[len(times) // 2],
                runtime=client_rt,
            ),
            cancel,
        ),
        "business_summary (1 day)": Probe(
            lambda: summary(start_date=today, end_date=today, runtime=owner_rt)
        ),
        "business_summary (30 days)": Probe(
            lambda: summary(start_date=month_start, end_date=today, runtime=owner_rt)
        ),
    }


def history_probes(
    database: Database, seeded: Seeded, model: ScriptedChatModel
) -> dict[int, dict[str, Probe]]:
    """Per conversation length: load_history alone, and a whole turn with an instant model."""
    deps = database.deps
    graph = build_graph(model, deps)
    found: dict[int, dict[str, Probe]] = {}
    for offset, (length, conversation_id) in enumerate(seeded.history.items(), start=1):
        context = ClientContext(
            organization_id=seeded.org_id,
            contact_id=seeded.contact_id + offset,
            conversation_id=conversation_id,
        )

        async def history(conversation_id: int = conversation_id) -> list[BaseMessage]:
            async with deps.sessions() as session:
                return await load_history(
                    session, organization_id=seeded.org_id, conversation_id=conversation_id
                )

        async def turn(context: ClientContext = context, history: Call = history) -> None:
            result = await run_turn(graph, context, await history())
            assert result.reply == "Combinado!", result.error

        found[length] = {"load_history": Probe(history), "whole turn": Probe(turn)}
    return found


# -- the three curves ------------------------------------------------------------------------


async def history_curve(server_url: str, args: argparse.Namespace, lengths: list[int]) -> Any:
    async with databases(server_url, args.revision, 1) as (database,):
        seeded = load(database, [1_000], lengths)
        model = ScriptedChatModel(responder=lambda _messages: AIMessage("Combinado!"))
        sized = {n: (database, p) for n, p in history_probes(database, seeded, model).items()}
        curve = await measure(sized, args.repeat)
        prompts = {}
        for length, (_, probes) in sized.items():
            await probes["whole turn"].call()
            prompt = model.calls[-1]["messages"]
            prompts[length] = (len(prompt), count_message_tokens(prompt))
        return curve, prompts


async def appointment_curve(server_url: str, args: argparse.Namespace, sizes: list[int]) -> Curve:
    async with databases(server_url, args.revision, len(sizes)) as found:
        sized = {}
        for size, database in zip(sizes, found, strict=True):
            sized[size] = (database, await tool_probes(database, load(database, [size])))
        return await measure(sized, args.repeat)


async def organization_curve(
    server_url: str, args: argparse.Namespace, counts: list[int], per_org: int
) -> Curve:
    async with databases(server_url, args.revision, len(counts)) as found:
        sized = {}
        for count, database in zip(counts, found, strict=True):
            seeded = load(database, [per_org] * count)
            sized[count] = (database, await tool_probes(database, seeded))
        return await measure(sized, args.repeat)


# -- report ----------------------------------------------------------------------------------


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # noqa: T201


def ratio_table(title: str, curve: Curve, keys: list[str]) -> str:
    """Median ms and buffers touched (summed over the call's statements), × the smallest size."""
    sizes = list(curve)
    head = f"| {title} | " + " | ".join(f"{k}: median ms · buffers" for k in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for size in sizes:
        cells = []
        for key in keys:
            (ms, plan), (base_ms, base_plan) = curve[size][key], curve[sizes[0]][key]
            buffers, base_buffers = (sum(p["buffers"] for p in x) for x in (plan, base_plan))
            growth = buffers / max(base_buffers, 1)
            cells.append(f"{ms:.1f} ({ms / base_ms:.2f}×) · {buffers} ({growth:.1f}×)")
        lines.append(f"| {size:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plan_table(curve: Curve, keys: list[str]) -> str:
    """Buffers and scans of the statements touching growing tables, smallest vs largest size."""
    sizes = [next(iter(curve)), list(curve)[-1]]
    lines = ["| call | statement | " + " | ".join(f"{s:,}: buffers · scans" for s in sizes) + " |"]
    lines.append("|---|---|" + "---|" * len(sizes))
    for key in keys:
        found = [curve[s][key][1] for s in sizes]
        for index, plan in enumerate(found[-1]):
            if not plan["scans"] and not plan["triggers"]:
                continue
            cells = []
            for sized in found:
                other = sized[index] if index < len(sized) else None
                if other is None:
                    cells.append("-")
                    continue
                trig = "".join(f"; trigger {n} {ms} ms" for n, ms in other["triggers"].items())
                cells.append(f"{other['buffers']} · " + "; ".join(other["scans"]) + trig)
            what = f"{plan['verb']} {'+'.join(plan['tables'])}"
            lines.append(f"| {key} | {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def history_table(curve: Curve, prompts: dict[int, tuple[int, int]]) -> str:
    keys = ["load_history", "whole turn"]
    lines = [ratio_table("messages in conversation", curve, keys)]
    lines += ["", "| messages in conversation | prompt messages | prompt tokens |", "|---|---|---|"]
    lines += [f"| {n:,} | {m} | {t:,} |" for n, (m, t) in prompts.items()]
    return "\n".join(lines)


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · "
        f"load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    )


async def run(args: argparse.Namespace, server_url: str) -> str:
    quick = args.quick
    appointments = [100, 1_000, 10_000] if quick else [100, 1_000, 10_000, 100_000]
    organizations = [1, 10, 100] if quick else [1, 10, 100, 1_000]
    per_org = 200 if quick else 1_000
    keys = [
        "check_availability",
        "book_appointment",
        "business_summary (1 day)",
        "business_summary (30 days)",
    ]
    with psycopg.connect(db.libpq_url(db.with_database(server_url, "postgres"))) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    out = [
        f"Machine: {machine()} · PostgreSQL {version[0] if version else '?'}",
        f"Schema revision: {args.revision}; {args.repeat} timed calls per figure after "
        f"{WARMUP} warm-up calls, sizes measured round-robin",
    ]
    history, prompts = await history_curve(server_url, args, [10, 100, 1_000])
    out += ["", "### History length", "", history_table(history, prompts)]
    out += ["", plan_table(history, ["load_history"])]
    curve = await appointment_curve(server_url, args, appointments)
    out += ["", "### Appointments in one organization", ""]
    out += [ratio_table("appointments", curve, keys), "", plan_table(curve, keys)]
    orgs = await organization_curve(server_url, args, organizations, per_org)
    out += ["", f"### Organizations ({per_org:,} appointments each)", ""]
    out += [ratio_table("organizations", orgs, keys), "", plan_table(orgs, keys)]
    out += ["", f"Load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description="Scale curve of history loading, availability, booking and summaries "
        "on scratch databases (created and dropped on the server of DATABASE_URL, or on "
        "embedded PostgreSQL). Prints markdown tables.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per figure")
    parser.add_argument(
        "--revision",
        default="head",
        help="migrate the scratch databases only this far (0002: before the indexes 0003 "
        "adds), to measure the 'before' curve",
    )
    args = parser.parse_args()
    if args.quick and args.repeat == 30:
        args.repeat = 10
    settings = load_settings()
    setup_logging(settings, level=logging.WARNING)  # stderr: stdout is the markdown report
    if settings.database_url:
        print(asyncio.run(run(args, settings.database_url)))  # noqa: T201
        return
    with running_services(settings) as services:
        print(asyncio.run(run(args, services.database_url)))  # noqa: T201


if __name__ == "__main__":
    main()
