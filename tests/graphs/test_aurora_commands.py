"""Aurora's owner commands run only after a later "sim" and are audited with the row before
and after; its figures (top services, new and inactive clients, free slots, opt-outs) equal
direct SQL or hand-computed expectations over seeded rows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from sqlalchemy import text
from sqlmodel import Session, SQLModel, col, select

from tests.conftest import NOW, SAO_PAULO, second_shop
from tests.fixtures_day import add, seed_day
from zapvet.graphs.aurora.graph import build_graph
from zapvet.graphs.turn import TurnResult, run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import (
    Appointment,
    AuditLog,
    AuroraPendingAction,
    AuroraProactiveMessage,
    Contact,
    Organization,
    Pet,
    Resource,
    Service,
)
from zapvet.money import format_brl
from zapvet.proactive.planning import schedule_daily_summaries
from zapvet.tools.context import AuroraContext
from zapvet.tools.deps import ToolDeps

pytestmark = pytest.mark.anyio

TODAY = NOW.replace(hour=0)  # Wednesday 25/11/2026, local midnight
TOMORROW = TODAY + timedelta(days=1)  # Thursday 26/11/2026
ASK = "Posso confirmar?"
PREVIEW = "PRÉVIA (nada foi feito ainda): "


def call(tool: str, **args: object) -> dict[str, object]:
    return {"name": tool, "args": args, "id": None, "type": "tool_call"}


def at(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute)


@pytest.fixture
def other_org(session: Session) -> Organization:
    """A second shop (same catalogue, same owner phone): its rows must never count."""
    return second_shop(session)


@pytest.fixture
def marina(session: Session, petfeliz: Organization) -> Contact:
    assert petfeliz.id
    contact = Contact(organization_id=petfeliz.id, phone="5511977776666", name="Marina")
    session.add(contact)
    session.flush()
    session.add(
        Pet(organization_id=petfeliz.id, contact_id=contact.id or 0, name="Rex", species="cachorro")
    )
    session.commit()
    return contact


def catalogue(
    session: Session, org: Organization
) -> tuple[dict[str, Service], dict[str, Resource]]:
    services = session.exec(select(Service).where(Service.organization_id == org.id))
    resources = session.exec(select(Resource).where(Resource.organization_id == org.id))
    return {s.name: s for s in services}, {r.name: r for r in resources}


def client(
    session: Session,
    org: Organization,
    phone: str,
    name: str,
    pets: tuple[str, ...] = (),
    **fields: Any,
) -> Contact:
    assert org.id is not None
    contact = Contact(organization_id=org.id, phone=phone, name=name, **fields)
    session.add(contact)
    session.flush()
    for pet in pets:
        session.add(
            Pet(organization_id=org.id, contact_id=contact.id or 0, name=pet, species="cachorro")
        )
    session.flush()
    return contact


def visit(
    session: Session,
    org: Organization,
    contact: Contact,
    start: datetime,
    status: str,
    *,
    service: str = "Banho",
    resource: str = "Carla",
) -> Appointment:
    """An appointment of `contact` (with their first pet, if any)."""
    services, resources = catalogue(session, org)
    pet = session.exec(
        select(Pet).where(Pet.contact_id == contact.id).order_by(col(Pet.id))
    ).first()
    chosen = services[service]
    row = Appointment(
        organization_id=org.id or 0,
        contact_id=contact.id or 0,
        pet_id=pet.id if pet else None,
        service_id=chosen.id or 0,
        resource_id=resources[resource].id or 0,
        starts_at=start,
        ends_at=start + timedelta(minutes=chosen.duration_minutes),
        status=status,  # type: ignore[arg-type]
        price_cents=chosen.price_cents,
        source="import",
    )
    session.add(row)
    session.flush()
    return row


async def ask_tool(deps: ToolDeps, owner: AuroraContext, tool: str, **args: object) -> Any:
    """One owner turn in which the model calls `tool`: the tool's JSON result, decoded."""
    model = ScriptedChatModel(
        script=[AIMessage("", tool_calls=[call(tool, **args)]), AIMessage("Pronto.")]
    )
    turn = await run_turn(build_graph(model, deps), owner, [HumanMessage("Me mostra")])
    (answer,) = [m for m in turn.messages if m.type == "tool"]
    assert getattr(answer, "status", "success") == "success", answer.content
    return json.loads(str(answer.content))


# -- commands -------------------------------------------------------------------------------


def current(session: Session, row: SQLModel) -> dict[str, Any]:
    """The row as the database holds it now."""
    session.expire_all()
    fresh = session.get(type(row), row.id)  # type: ignore[attr-defined]
    assert fresh is not None
    return fresh.model_dump()


def decoded(logged: dict[str, Any] | None, like: dict[str, Any]) -> dict[str, Any] | None:
    """An audit snapshot with its ISO timestamps turned back into instants, to compare with
    `like` whatever offset the serialising session used."""
    if logged is None:
        return None
    return {
        k: datetime.fromisoformat(v) if isinstance(like.get(k), datetime) and v else v
        for k, v in logged.items()
    }


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The columns whose value differs (`updated_at` is bookkeeping, not the change)."""
    return {k: v for k, v in after.items() if before[k] != v and k != "updated_at"}


async def confirmed_command(
    deps: ToolDeps,
    owner: AuroraContext,
    session: Session,
    target: SQLModel,
    tool: str,
    args: Mapping[str, object],
    preview: str,
) -> tuple[TurnResult, dict[str, Any], dict[str, Any], AuditLog]:
    """Propose `tool` in one owner message, check nothing changed, say "sim" in the next.

    Returns the confirming turn, the target row before and after, and the one audit row.
    """
    model = ScriptedChatModel(
        script=[AIMessage("", tool_calls=[call(tool, **args)]), AIMessage(ASK)]
    )
    graph = build_graph(model, deps)
    before = current(session, target)
    history = [HumanMessage("Faz isso pra mim")]

    first = await run_turn(graph, owner, history)
    (tool_answer,) = [str(m.content) for m in first.messages if m.type == "tool"]
    assert tool_answer.startswith(PREVIEW + preview + "\n"), tool_answer
    assert first.reply == ASK
    assert current(session, target) == before  # previewed, nothing done
    assert session.exec(select(AuditLog)).all() == []
    (proposal,) = session.exec(select(AuroraPendingAction)).all()
    assert (proposal.action, proposal.status, proposal.preview) == (tool, "pending", preview)

    second = await run_turn(graph, owner, [*history, AIMessage(ASK), HumanMessage("sim")])
    assert len(model.calls) == 2  # the "sim" was answered without the model
    session.expire_all()
    proposal = session.exec(select(AuroraPendingAction)).one()
    assert (proposal.status, proposal.resolved_at, proposal.result) == (
        "confirmed",
        NOW,
        second.reply,
    )
    after = current(session, target)
    (audit,) = session.exec(select(AuditLog)).all()
    assert audit.organization_id == owner.organization_id
    assert (audit.actor_kind, audit.actor_id) == ("owner", owner.owner_number_id)  # who
    assert (audit.action, audit.entity, audit.entity_id) == (
        tool,
        type(target).__tablename__,
        before["id"],
    )  # what
    assert audit.created_at == NOW  # when: the moment the owner confirmed
    assert decoded(audit.before, before) == before
    assert decoded(audit.after, after) == after
    return second, before, after, audit


async def test_cancel_appointment_command_cancels_after_yes_and_audits(
    deps: ToolDeps, owner: AuroraContext, marina: Contact, session: Session, petfeliz: Organization
) -> None:
    booked = visit(session, petfeliz, marina, at(TOMORROW, 10), "scheduled")
    session.commit()
    label = f"#{booked.id} Banho de Marina em quinta-feira, 26/11/2026 às 10:00"

    reply, before, after, audit = await confirmed_command(
        deps, owner, session, booked, "cancel_appointment", {"appointment_id": booked.id},
        preview=f"cancelar {label}.",
    )  # fmt: skip

    assert reply.reply == f"Feito: agendamento #{booked.id} cancelado."
    assert changed(before, after) == {"status": "cancelled", "cancelled_at": NOW}
    assert audit.before and audit.after
    assert (audit.before["status"], audit.before["cancelled_at"]) == ("scheduled", None)
    assert audit.after["status"] == "cancelled"
    assert datetime.fromisoformat(audit.after["cancelled_at"]) == NOW


async def test_reschedule_appointment_command_moves_after_yes_and_audits(
    deps: ToolDeps, owner: AuroraContext, marina: Contact, session: Session, petfeliz: Organization
) -> None:
    booked = visit(session, petfeliz, marina, at(TOMORROW, 10), "confirmed")
    session.commit()
    label = f"#{booked.id} Banho de Marina em quinta-feira, 26/11/2026 às 10:00"
    args = {"appointment_id": booked.id, "new_date": "2026-11-26", "new_time": "15:00"}

    reply, before, after, audit = await confirmed_command(
        deps, owner, session, booked, "reschedule_appointment", args,
        preview=f"remarcar {label} para quinta-feira, 26/11/2026 às 15:00.",
    )  # fmt: skip

    assert reply.reply == (
        f"Feito: agendamento #{booked.id} remarcado para quinta-feira, 26/11/2026 às 15:00."
    )
    # Same resource (Carla was free), same status, same price: only the time moved.
    assert changed(before, after) == {"starts_at": at(TOMORROW, 15), "ends_at": at(TOMORROW, 16)}
    assert audit.before and audit.after
    assert datetime.fromisoformat(audit.before["starts_at"]) == at(TOMORROW, 10)
    assert datetime.fromisoformat(audit.before["ends_at"]) == at(TOMORROW, 11)
    assert datetime.fromisoformat(audit.after["starts_at"]) == at(TOMORROW, 15)
    assert datetime.fromisoformat(audit.after["ends_at"]) == at(TOMORROW, 16)
    assert audit.before["status"] == audit.after["status"] == "confirmed"


async def test_update_contact_command_renames_after_yes_and_audits(
    deps: ToolDeps, owner: AuroraContext, marina: Contact, session: Session
) -> None:
    args = {"client": "11 97777-6666", "name": "Marina Souza", "notes": "Prefere banho às sextas"}

    reply, before, after, audit = await confirmed_command(
        deps, owner, session, marina, "update_contact", args,
        preview="atualizar Marina: name → 'Marina Souza', notes → 'Prefere banho às sextas'.",
    )  # fmt: skip

    assert reply.reply == "Feito: cadastro de Marina Souza atualizado."
    assert changed(before, after) == {"name": "Marina Souza", "notes": "Prefere banho às sextas"}
    assert audit.before and audit.after
    assert (audit.before["name"], audit.before["notes"]) == ("Marina", None)
    assert (audit.after["name"], audit.after["notes"]) == (
        "Marina Souza",
        "Prefere banho às sextas",
    )
    assert audit.before["phone"] == audit.after["phone"] == "5511977776666"


@pytest.mark.parametrize(
    ("status", "word"), [("completed", "concluído"), ("no_show", "falta (não compareceu)")]
)
async def test_mark_appointment_command_sets_status_after_yes_and_audits(
    status: str,
    word: str,
    deps: ToolDeps,
    owner: AuroraContext,
    marina: Contact,
    session: Session,
    petfeliz: Organization,
) -> None:
    started = visit(session, petfeliz, marina, at(TODAY, 10), "scheduled")  # NOW is 14:00
    session.commit()
    label = f"#{started.id} Banho de Marina em quarta-feira, 25/11/2026 às 10:00"

    reply, before, after, audit = await confirmed_command(
        deps, owner, session, started, "mark_appointment",
        {"appointment_id": started.id, "status": status}, preview=f"marcar {label} como {word}.",
    )  # fmt: skip

    assert reply.reply == f"Feito: agendamento #{started.id} marcado como {word}."
    assert changed(before, after) == {"status": status}
    assert audit.before and audit.after
    assert (audit.before["status"], audit.after["status"]) == ("scheduled", status)
    assert audit.after["price_cents"] == audit.before["price_cents"] == 5000


# -- analytics ------------------------------------------------------------------------------

TOP_SERVICES_SQL = """
SELECT s.name, count(*), sum(a.price_cents)
  FROM appointments a JOIN services s ON s.id = a.service_id
 WHERE a.organization_id = :org AND a.status = 'completed'
   AND (a.starts_at AT TIME ZONE 'America/Sao_Paulo')::date BETWEEN :start AND :end
 GROUP BY s.name
 ORDER BY count(*) DESC, sum(a.price_cents) DESC, s.name
 LIMIT 5
"""


async def test_top_services_equal_direct_sql(
    deps: ToolDeps,
    owner: AuroraContext,
    session: Session,
    petfeliz: Organization,
    other_org: Organization,
) -> None:
    seed_day(session, petfeliz)  # 25/11: 8 banhos, 3 consultas, 1 tosa; 24/11: 1 banho
    seed_day(session, other_org)
    services, resources = catalogue(session, petfeliz)
    monday, sunday = TODAY - timedelta(days=2), TODAY - timedelta(days=3)
    extra = [
        ("Tosa Higiênica", "Carla", at(monday, 9), "completed"),
        ("Vacina V10", "Dra. Ana", at(monday, 9), "completed"),
        ("Vacina Antirrábica", "Dra. Ana", at(monday, 9, 30), "completed"),
        # Not done, or outside the week: if counted, they would reorder the ranking.
        *(("Tosa Higiênica", "Marcos", at(monday, 8 + i), "cancelled") for i in range(3)),
        *(("Vacina V10", "Dra. Ana", at(sunday, 9 + i), "completed") for i in range(3)),
    ]
    for n, (service, resource, start, status) in enumerate(extra):
        add(session, petfeliz, f"55119300000{n:02d}", f"Extra {n}", services[service],
            resources[resource], start, status)  # fmt: skip
    session.commit()

    answer = await ask_tool(
        deps, owner, "top_services", start_date="2026-11-23", end_date="2026-11-29"
    )

    params = {"org": petfeliz.id, "start": date(2026, 11, 23), "end": date(2026, 11, 29)}
    direct = [
        {"service": name, "count": count, "revenue": format_brl(int(revenue))}
        for name, count, revenue in session.execute(text(TOP_SERVICES_SQL), params)
    ]
    assert (
        answer["top"]
        == direct
        == [
            {"service": "Banho", "count": 9, "revenue": "R$ 450,00"},
            {"service": "Consulta Veterinária Geral", "count": 3, "revenue": "R$ 360,00"},
            {"service": "Vacina V10", "count": 1, "revenue": "R$ 95,00"},
            {"service": "Tosa Completa", "count": 1, "revenue": "R$ 90,00"},
            {"service": "Vacina Antirrábica", "count": 1, "revenue": "R$ 70,00"},
        ]
    )


NEW_CLIENTS_SQL = """
SELECT c.id, c.name, c.phone,
       coalesce(array_agg(p.name ORDER BY p.name) FILTER (WHERE p.id IS NOT NULL), '{}')
  FROM contacts c LEFT JOIN pets p ON p.contact_id = c.id
 WHERE c.organization_id = :org
   AND (c.created_at AT TIME ZONE 'America/Sao_Paulo')::date BETWEEN :start AND :end
   AND c.phone NOT IN (SELECT phone FROM aurora_owner_numbers WHERE organization_id = :org)
 GROUP BY c.id
 ORDER BY c.created_at
"""


async def test_new_clients_in_a_period_equal_direct_sql(
    deps: ToolDeps,
    owner: AuroraContext,
    session: Session,
    petfeliz: Organization,
    other_org: Organization,
) -> None:
    def local(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
        return datetime(2026, month, day, hour, minute, tzinfo=SAO_PAULO)

    # First contact at the local edges of 01/11..15/11 (São Paulo is UTC-3).
    for phone, name, pets, created in [
        ("5511940000001", "Véspera", ("Bidu",), local(31, 23, 30, month=10)),  # 01/11 in UTC
        ("5511940000002", "Primeira", ("Toby",), local(1, 0, 30)),
        ("5511940000003", "Sem Pet", (), local(10, 12)),
        ("5511940000004", "Última", ("Luna", "Amora"), local(15, 23, 59)),
        ("5511940000005", "Depois", ("Fred",), local(16, 0)),
    ]:
        client(session, petfeliz, phone, name, pets, created_at=created)
    client(session, other_org, "5511940000009", "De Outra Loja", ("Kiko",), created_at=local(10, 9))
    # The owner's own contact is no client, even when it first wrote in the period.
    owner_contact = session.get(Contact, owner.contact_id)
    assert owner_contact is not None
    owner_contact.created_at = local(5, 9)
    session.commit()

    answer = await ask_tool(
        deps, owner, "new_clients", start_date="2026-11-01", end_date="2026-11-15"
    )

    params = {"org": petfeliz.id, "start": date(2026, 11, 1), "end": date(2026, 11, 15)}
    direct = [
        {"client_id": id_, "name": name, "phone": phone, "pets": list(pets)}
        for id_, name, phone, pets in session.execute(text(NEW_CLIENTS_SQL), params)
    ]
    assert answer["clients"] == direct
    assert answer["count"] == len(direct) == 3
    assert [(c["name"], c["pets"]) for c in answer["clients"]] == [
        ("Primeira", ["Toby"]),
        ("Sem Pet", []),
        ("Última", ["Amora", "Luna"]),
    ]


INACTIVE_SQL = """
SELECT c.id, max(a.starts_at) FILTER (WHERE a.status = 'completed') AS last_visit
  FROM contacts c JOIN appointments a ON a.contact_id = c.id
 WHERE c.organization_id = :org
 GROUP BY c.id
HAVING max(a.starts_at) FILTER (WHERE a.status = 'completed') < :threshold
   AND NOT EXISTS (SELECT 1 FROM appointments b
                    WHERE b.contact_id = c.id AND b.status IN ('scheduled', 'confirmed')
                      AND b.starts_at >= :now)
 ORDER BY last_visit
"""


async def test_inactive_clients_with_their_pets_equal_direct_sql(
    deps: ToolDeps,
    owner: AuroraContext,
    session: Session,
    petfeliz: Organization,
    other_org: Organization,
) -> None:
    def local(month: int, day: int, hour: int = 10) -> datetime:
        return datetime(2026, month, day, hour, tzinfo=SAO_PAULO)

    # 60 days before NOW (25/11 14:00) is 26/09 14:00.
    ana = client(session, petfeliz, "5511950000001", "Ana", ("Bolt", "Amora"))
    visit(session, petfeliz, ana, local(8, 10), "completed")
    bruno = client(session, petfeliz, "5511950000002", "Bruno", ("Thor",))
    visit(session, petfeliz, bruno, local(9, 1), "completed")
    visit(session, petfeliz, bruno, local(10, 15), "no_show")  # not a visit
    visit(session, petfeliz, bruno, local(11, 2), "cancelled")  # not a visit
    fabio = client(session, petfeliz, "5511950000003", "Fábio", ("Zeca",))
    visit(session, petfeliz, fabio, local(9, 26, hour=10), "completed")  # 4 h past the limit
    gabi = client(session, petfeliz, "5511950000004", "Gabi", ("Lola",))
    visit(session, petfeliz, gabi, local(9, 26, hour=15), "completed")  # 1 h inside the limit
    cecilia = client(session, petfeliz, "5511950000005", "Cecília", ("Mel",))
    visit(session, petfeliz, cecilia, local(8, 1), "completed")
    visit(session, petfeliz, cecilia, local(12, 2), "scheduled")  # coming back: not inactive
    davi = client(session, petfeliz, "5511950000006", "Davi", ("Nina",))
    visit(session, petfeliz, davi, local(10, 20), "completed")
    elisa = client(session, petfeliz, "5511950000007", "Elisa", ("Pipoca",))
    visit(session, petfeliz, elisa, local(7, 1), "cancelled")  # never served
    stranger = client(session, other_org, "5511950000008", "De Outra Loja", ("Kiko",))
    visit(session, other_org, stranger, local(6, 1), "completed")
    session.commit()

    answer = await ask_tool(deps, owner, "inactive_clients", days=60)

    params = {"org": petfeliz.id, "now": NOW, "threshold": NOW - timedelta(days=60)}
    direct = session.execute(text(INACTIVE_SQL), params).all()
    assert [c["client_id"] for c in answer["clients"]] == [id_ for id_, _ in direct]
    assert [c["last_visit"] for c in answer["clients"]] == [
        f"{last.astimezone(SAO_PAULO):%d/%m/%Y}" for _, last in direct
    ]
    assert (answer["days"], answer["count"]) == (60, 3)
    assert [(c["name"], c["phone"], c["pets"], c["last_visit"]) for c in answer["clients"]] == [
        ("Ana", "5511950000001", ["Amora", "Bolt"], "10/08/2026"),
        ("Bruno", "5511950000002", ["Thor"], "01/09/2026"),
        ("Fábio", "5511950000003", ["Zeca"], "26/09/2026"),
    ]


async def test_free_slots_tomorrow_match_hand_computed_capacity(
    deps: ToolDeps,
    owner: AuroraContext,
    session: Session,
    petfeliz: Organization,
    other_org: Organization,
) -> None:
    """Thursday 26/11, open 08-12 and 13-18, 30-minute grid; Carla and Marcos do banho and
    tosa, Dra. Ana consultas. Cancelled and no-show rows free their time."""
    services, resources = catalogue(session, petfeliz)
    busy = [
        ("Banho", "Carla", at(TOMORROW, 10), "scheduled"),  # 10:00-11:00
        ("Banho", "Marcos", at(TOMORROW, 10), "confirmed"),  # 10:00-11:00
        ("Tosa Completa", "Marcos", at(TOMORROW, 14), "scheduled"),  # 14:00-15:30
        ("Tosa Higiênica", "Carla", at(TOMORROW, 15), "scheduled"),  # 15:00-15:45
        ("Banho", "Carla", at(TOMORROW, 13), "cancelled"),
        ("Consulta Veterinária Geral", "Dra. Ana", at(TOMORROW, 8), "scheduled"),  # 08:00-08:30
        ("Consulta Veterinária Geral", "Dra. Ana", at(TOMORROW, 11, 30), "no_show"),
    ]
    for n, (service, resource, start, status) in enumerate(busy):
        add(session, petfeliz, f"55119600000{n:02d}", f"Agenda {n}", services[service],
            resources[resource], start, status)  # fmt: skip
    # The other shop is full all morning: none of it may show here.
    theirs, their_people = catalogue(session, other_org)
    for n, hour in enumerate(range(8, 12)):
        for m, resource in enumerate(("Carla", "Marcos")):
            add(session, other_org, f"551197000{n}{m}", "Outra", theirs["Banho"],
                their_people[resource], at(TOMORROW, hour), "scheduled")  # fmt: skip
    session.commit()

    answer = await ask_tool(deps, owner, "free_slots", date="2026-11-26")

    def grid(first: str, last: str) -> list[str]:
        """Every half hour from `first` to `last`, inclusive."""
        start, end = (datetime.strptime(t, "%H:%M") for t in (first, last))
        steps = (end - start) // timedelta(minutes=30)
        return [f"{start + timedelta(minutes=30 * i):%H:%M}" for i in range(steps + 1)]

    assert answer["day"] == "quinta-feira, 26/11/2026"
    assert sorted(answer["free"]) == sorted(services)
    assert answer["free"]["Banho"] == {  # 60 min: one of Carla / Marcos free all the hour
        "manhã": ["08:00", "08:30", "09:00", "11:00"],
        "tarde": ["13:00", "13:30", "14:00", "15:30", "16:00", "16:30", "17:00"],
    }
    assert answer["free"]["Tosa Completa"] == {  # 90 min, must end by 12:00 / 18:00
        "manhã": ["08:00", "08:30"],
        "tarde": ["13:00", "13:30", "15:30", "16:00", "16:30"],
    }
    assert answer["free"]["Consulta Veterinária Geral"] == {  # 30 min, Dra. Ana alone
        "manhã": grid("08:30", "11:30"),
        "tarde": grid("13:00", "17:30"),
    }


# -- opt-out --------------------------------------------------------------------------------


async def test_owner_summaries_count_the_opted_out_clients(
    deps: ToolDeps,
    owner: AuroraContext,
    session: Session,
    petfeliz: Organization,
    other_org: Organization,
) -> None:
    for n in range(3):
        client(
            session,
            petfeliz,
            f"551198000000{n}",
            f"Parou {n}",
            opted_out_at=NOW - timedelta(days=n),
        )
    for n in range(2):
        client(session, petfeliz, f"551198100000{n}", f"Recebe {n}")
    client(session, petfeliz, "5511982000000", "Voltou a receber", opted_out_at=None)
    for n in range(2):
        client(session, other_org, f"551198300000{n}", f"Parou lá {n}", opted_out_at=NOW)
    session.commit()

    answer = await ask_tool(
        deps, owner, "business_summary", start_date="2026-11-25", end_date="2026-11-25"
    )

    direct = session.execute(
        text(
            "SELECT count(*) FROM contacts WHERE organization_id = :org"
            " AND opted_out_at IS NOT NULL"
        ),
        {"org": petfeliz.id},
    ).scalar_one()
    assert answer["clients_opted_out_of_messages"] == direct == 3

    # The daily summary each owner receives carries its own shop's count.
    async with deps.sessions() as async_session, async_session.begin():
        await schedule_daily_summaries(async_session, at(TODAY, 19, 30))
    line = "Clientes que pediram para não receber mensagens: {}"
    sent = {
        m.organization_id: m.content
        for m in session.exec(
            select(AuroraProactiveMessage).where(
                AuroraProactiveMessage.message_type == "daily_summary"
            )
        )
    }
    assert petfeliz.id and other_org.id
    assert sent.keys() == {petfeliz.id, other_org.id}
    assert line.format(3) in sent[petfeliz.id]
    assert line.format(2) in sent[other_org.id]
