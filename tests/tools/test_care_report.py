"""What care invitations brought back: Aurora's `care_report` equals SQL written here over the
same rows, and never counts another organization's invitations or bookings."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from sqlalchemy import text
from sqlmodel import Session, select

from tests.conftest import SAO_PAULO, second_shop
from zapvet.graphs.aurora.graph import build_graph
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import (
    Appointment,
    AuroraProactiveMessage,
    Contact,
    Organization,
    Pet,
    Resource,
    Service,
)
from zapvet.money import format_brl
from zapvet.tools.context import AuroraContext
from zapvet.tools.deps import ToolDeps

pytestmark = pytest.mark.anyio
DECEMBER = (date(2026, 12, 1), date(2026, 12, 31))

#: Invitations sent in the period (local dates), each with the first appointment of its pet
#: and service created from its sending until `within` later, neither cancelled nor missed.
DIRECT_SQL = """
WITH invitation AS (
  SELECT id, pet_id, service_id, sent_at FROM aurora_proactive_messages
   WHERE organization_id = :org AND message_type = 'care_invitation' AND status = 'sent'
     AND (sent_at AT TIME ZONE 'America/Sao_Paulo')::date BETWEEN :start AND :end
), followed AS (
  SELECT DISTINCT ON (i.id) i.id, a.contact_id, a.status, a.price_cents
    FROM invitation i
    JOIN appointments a ON a.pet_id = i.pet_id AND a.service_id = i.service_id
   WHERE a.created_at >= i.sent_at AND a.created_at < i.sent_at + make_interval(days => :days)
     AND a.status NOT IN ('cancelled', 'no_show')
   ORDER BY i.id, a.created_at, a.id
)
SELECT (SELECT count(*) FROM invitation), count(*), count(DISTINCT contact_id),
       count(*) FILTER (WHERE status = 'completed'), coalesce(sum(price_cents), 0),
       coalesce(sum(price_cents) FILTER (WHERE status = 'completed'), 0)
  FROM followed
"""


def local(day: int, hour: int, minute: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SAO_PAULO)


class Shop:
    """Writes one organization's pets, invitations and bookings."""

    def __init__(self, session: Session, org: Organization) -> None:
        assert org.id is not None
        self.session, self.org_id = session, org.id
        self.slot = local(7, 8)  # each booking on its own hour: no resource is overbooked

    def one(self, model: type[Service] | type[Resource], name: str) -> Any:
        return self.session.exec(
            select(model).where(model.organization_id == self.org_id, model.name == name)
        ).one()

    def pet(self, name: str) -> Pet:
        contact = Contact(organization_id=self.org_id, phone=f"55119{len(name)}{name}", name=name)
        self.session.add(contact)
        self.session.flush()
        pet = Pet(organization_id=self.org_id, contact_id=contact.id or 0, name=name,
                  species="cachorro")  # fmt: skip
        self.session.add(pet)
        self.session.flush()
        return pet

    def invite(self, pet: Pet, service: str, sent_at: datetime, status: str = "sent") -> None:
        self.session.add(
            AuroraProactiveMessage(
                organization_id=self.org_id,
                contact_id=pet.contact_id,
                pet_id=pet.id,
                service_id=self.one(Service, service).id,
                message_type="care_invitation",
                content="convite",
                scheduled_for=sent_at,
                status=status,  # type: ignore[arg-type]
                sent_at=sent_at if status == "sent" else None,
            )
        )
        self.session.flush()

    def book(self, pet: Pet, service: str, created_at: datetime, status: str) -> None:
        chosen: Service = self.one(Service, service)
        resource = "Dra. Ana" if chosen.category in ("vacina", "consulta") else "Carla"
        self.slot += timedelta(hours=2)
        self.session.add(
            Appointment(
                organization_id=self.org_id,
                contact_id=pet.contact_id,
                pet_id=pet.id,
                service_id=chosen.id or 0,
                resource_id=self.one(Resource, resource).id,
                starts_at=self.slot,
                ends_at=self.slot + timedelta(minutes=chosen.duration_minutes),
                status=status,  # type: ignore[arg-type]
                price_cents=chosen.price_cents,
                created_at=created_at,
            )
        )
        self.session.flush()


def seed(session: Session, org: Organization) -> None:
    shop = Shop(session, org)
    rex, luna, thor, mel, bob, nina = (shop.pet(n) for n in
                                       ("Rex", "Luna", "Thor", "Mel", "Bob", "Nina"))  # fmt: skip
    shop.book(rex, "Banho", local(9, 9, month=11), "completed")  # before: not a result
    shop.invite(rex, "Banho", local(1, 10))
    shop.book(rex, "Tosa Completa", local(1, 10, 10), "scheduled")  # another service
    shop.book(rex, "Banho", local(1, 10, 20), "scheduled")  # R$ 50,00
    shop.book(rex, "Banho", local(1, 11), "scheduled")  # a second booking: one per invitation
    shop.invite(luna, "Vacina V10", local(2, 11))
    shop.book(luna, "Vacina V10", local(3, 9), "completed")  # R$ 95,00, completed
    shop.invite(thor, "Banho", local(2, 11))
    shop.book(thor, "Banho", local(20, 9), "scheduled")  # 18 days later: only within 30
    shop.invite(mel, "Banho", local(3, 9))
    shop.book(mel, "Banho", local(3, 10), "cancelled")  # cancelled: no result
    shop.invite(bob, "Banho", local(3, 9), status="cancelled")  # never sent
    shop.book(bob, "Banho", local(3, 12), "scheduled")
    # 23:30 on 30/11 in São Paulo is 02:30 on 01/12 in UTC: November's, not December's.
    shop.invite(nina, "Banho", local(30, 23, 30, month=11))
    shop.book(nina, "Banho", local(1, 8), "completed")
    session.commit()


def direct(session: Session, org: Organization, days: int) -> tuple[int, ...]:
    params = {"org": org.id, "start": DECEMBER[0], "end": DECEMBER[1], "days": days}
    return tuple(int(v) for v in session.execute(text(DIRECT_SQL), params).one())


async def ask(deps: ToolDeps, owner: AuroraContext, **args: object) -> dict[str, Any]:
    call = {"name": "care_report", "args": args, "id": "call-1", "type": "tool_call"}
    model = ScriptedChatModel(script=[AIMessage("", tool_calls=[call]), AIMessage("Isso.")])
    question = HumanMessage("Quantos clientes voltaram pelos lembretes este mês?")
    turn = await run_turn(build_graph(model, deps), owner, [question])
    (message,) = [m for m in turn.messages if isinstance(m, ToolMessage)]
    assert message.status == "success", message.content
    return dict(json.loads(str(message.content)))


@pytest.mark.parametrize("days", [14, 30])
async def test_care_report_equals_direct_sql_and_ignores_another_shop(
    deps: ToolDeps,
    owner: AuroraContext,
    session: Session,
    petfeliz: Organization,
    days: int,
) -> None:
    seed(session, petfeliz)
    other = second_shop(session)
    seed(session, other)
    Shop(session, other).invite(
        session.exec(select(Pet).where(Pet.organization_id == other.id)).first() or Pet(),
        "Banho",
        local(4, 9),
    )
    session.commit()

    answer = await ask(deps, owner, start_date="2026-12-01", end_date="2026-12-31",
                       within_days=days)  # fmt: skip
    sent, booked, clients, completed, revenue, done = direct(session, petfeliz, days)
    total = answer["total"]
    assert (total["invitations_sent"], total["bookings"], total["clients_returned"]) == (
        sent, booked, clients
    )  # fmt: skip
    assert total["completed"] == completed
    assert (total["revenue"], total["completed_revenue"]) == (format_brl(revenue), format_brl(done))
    # By hand: Rex, Luna, Thor and Mel were invited in December; Rex's banho and Luna's
    # vaccine followed within 14 days, Thor's banho within 30.
    expected = {14: (4, 2, 2, 1, 14500, 9500), 30: (4, 3, 3, 1, 19500, 9500)}[days]
    assert (sent, booked, clients, completed, revenue, done) == expected
    assert answer["by_service"]["Vacina V10"] == {
        "invitations_sent": 1, "bookings": 1, "clients_returned": 1, "completed": 1,
        "revenue": "R$ 95,00", "completed_revenue": "R$ 95,00",
    }  # fmt: skip
    banho = answer["by_service"]["Banho"]
    assert (banho["invitations_sent"], banho["bookings"]) == (3, booked - 1)
    assert answer["within_days"] == days and answer["period"] == "01/12/2026 a 31/12/2026"


async def test_care_report_of_november_counts_the_late_evening_invitation(
    deps: ToolDeps, owner: AuroraContext, session: Session, petfeliz: Organization
) -> None:
    seed(session, petfeliz)
    answer = await ask(deps, owner, start_date="2026-11-01", end_date="2026-11-30")
    assert answer["total"]["invitations_sent"] == 1 and answer["total"]["bookings"] == 1
    assert answer["total"]["completed_revenue"] == "R$ 50,00"
    assert answer["within_days"] == 14  # the default


async def test_care_report_refuses_a_window_out_of_range(
    deps: ToolDeps, owner: AuroraContext
) -> None:
    call = {"name": "care_report", "args": {"start_date": "2026-12-01", "end_date": "2026-12-31",
            "within_days": 0}, "id": "call-1", "type": "tool_call"}  # fmt: skip
    model = ScriptedChatModel(script=[AIMessage("", tool_calls=[call]), AIMessage("Ok.")])
    turn = await run_turn(build_graph(model, deps), owner, [HumanMessage("E com 0 dias?")])
    (message,) = [m for m in turn.messages if isinstance(m, ToolMessage)]
    assert "1 a 365 dias" in str(message.content)
