"""Two organizations full of rows, snapshots of them, and the bridge served on loopback.

Organization A is the example shop; B is a copy with its own instance, secrets, owner,
clients, pets, appointments, conversations and one service only B offers. Every name and
phone of B is distinctive, so a leak shows up as a plain substring of a tool's answer.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis.internal.conjecture import utils as conjecture_utils
from sqlalchemy import Engine, text
from sqlmodel import Session, SQLModel, select

from tests.conftest import EXAMPLE_ORG, NOW
from tests.pipeline.support import Recorder, purge
from zapvet import db
from zapvet.bridge.app import build_app
from zapvet.embedded import ServiceUrls
from zapvet.models import (
    Appointment,
    AuroraOwnerNumber,
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    Pet,
    Resource,
    ResourceService,
    Service,
    WhatsAppInstance,
)
from zapvet.org import apply_spec, parse_spec
from zapvet.runtime import bridge_state_factory
from zapvet.serving import BackgroundServer
from zapvet.tools.deps import ToolDeps


def _restore_many_more() -> None:
    """Give hypothesis' `many` back the `more()` method hypothesis-jsonschema calls.

    hypothesis 6.170 replaced `while elements.more():` by `with many(...) as e: for _ in e:`;
    hypothesis-jsonschema 0.23.1 (the newest, used by schemathesis for every object schema)
    still calls `more()` and fails with AttributeError. This adapter drives the new
    iterator one step per call; it does nothing on a hypothesis that still has `more()`.
    """
    if hasattr(conjecture_utils.many, "more"):
        return

    def more(self: Any) -> bool:
        steps = self.__dict__.get("_legacy_steps")
        if steps is None:
            self.__enter__()
            steps = self.__dict__["_legacy_steps"] = iter(self)
        try:
            next(steps)
        except StopIteration:
            self.__exit__(None)
            return False
        return True

    conjecture_utils.many.more = more  # type: ignore[attr-defined]


_restore_many_more()

A_INSTANCE, A_TOKEN = "petfeliz", "hook-secret"
B_INSTANCE, B_TOKEN = "outra", "outra-hook-secret"
A_CLOUD, A_SECRET, A_VERIFY = "106540352242922", "app-secret-a", "verify-a"
B_CLOUD, B_SECRET, B_VERIFY = "206540352242922", "app-secret-b", "verify-b"
#: Thursday 26 November 2026, the day after NOW, when both shops have bookings.
TOMORROW = "2026-11-26"
B_ONLY_SERVICE = "Hidratação Zeta"


@dataclass
class Shop:
    """The ids and distinctive texts of one organization's rows."""

    org_id: int
    owner_number_id: int
    owner_phone: str
    owner_contact_id: int = 0
    owner_conversation_id: int = 0
    contacts: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    pets: list[str] = field(default_factory=list)
    conversations: list[int] = field(default_factory=list)
    upcoming: list[int] = field(default_factory=list)
    past: list[int] = field(default_factory=list)

    @property
    def appointments(self) -> list[int]:
        return [*self.upcoming, *self.past]

    @property
    def secrets(self) -> list[str]:
        """Texts that only this shop's rows contain (names, phones, pets)."""
        return [*self.names, *self.phones, *self.pets]


@dataclass
class World:
    a: Shop
    b: Shop


def _other_spec_text() -> str:
    return (
        EXAMPLE_ORG.read_text()
        .replace('slug = "petfeliz"', 'slug = "outra"')
        .replace(f'instance = "{A_INSTANCE}"', f'instance = "{B_INSTANCE}"')
        .replace(f'webhook_token = "{A_TOKEN}"', f'webhook_token = "{B_TOKEN}"')
        .replace("+55 11 98888-7777", "+55 21 97777-1111")
        .replace('name = "Saraiva"', 'name = "Quincas Beta"')
    )


def _local(day: str, hour: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour}:00").replace(tzinfo=NOW.tzinfo)


def _shop(session: Session, spec_text: str, clients: list[tuple[str, str, str]]) -> Shop:
    org_id = apply_spec(session, parse_spec(spec_text)).organization_id
    owner = session.exec(
        select(AuroraOwnerNumber).where(AuroraOwnerNumber.organization_id == org_id)
    ).one()
    shop = Shop(org_id=org_id, owner_number_id=owner.id or 0, owner_phone=owner.phone)
    services = {
        s.name: s for s in session.exec(select(Service).where(Service.organization_id == org_id))
    }
    resources = {
        r.name: r for r in session.exec(select(Resource).where(Resource.organization_id == org_id))
    }
    owner_contact = Contact(organization_id=org_id, phone=owner.phone, name=owner.name)
    session.add(owner_contact)
    session.flush()
    owner_conversation = Conversation(organization_id=org_id, contact_id=owner_contact.id or 0)
    session.add(owner_conversation)
    session.flush()
    shop.owner_contact_id, shop.owner_conversation_id = (
        owner_contact.id or 0,
        owner_conversation.id or 0,
    )
    slots = [
        ("Consulta Veterinária Geral", "Dra. Ana", TOMORROW, "{h}:00", "scheduled", True),
        ("Banho", "Carla", TOMORROW, "{h}:00", "confirmed", True),
        ("Banho", "Carla", "2026-11-24", "{h}:00", "completed", False),
        ("Consulta Veterinária Geral", "Dra. Ana", "2026-11-25", "{e}:00", "scheduled", False),
    ]
    for i, (name, phone, pet_name) in enumerate(clients):
        contact = Contact(
            organization_id=org_id,
            phone=phone,
            name=name,
            last_contact_at=NOW - timedelta(days=100),
        )
        session.add(contact)
        session.flush()
        cid = contact.id or 0
        session.add(
            ContactIdentity(organization_id=org_id, contact_id=cid, kind="phone", value=phone)
        )
        pet = Pet(organization_id=org_id, contact_id=cid, name=pet_name, species="cachorro")
        session.add(pet)
        conversation = Conversation(
            organization_id=org_id,
            contact_id=cid,
            status="escalated" if i else "active",
            escalation_reason=f"motivo de {name}" if i else None,
        )
        session.add(conversation)
        session.flush()
        session.add(
            Message(
                organization_id=org_id,
                conversation_id=conversation.id or 0,
                whatsapp_message_id=f"{name}-1",
                direction="incoming",
                content=f"Oi, aqui é {name}",
                status="processed",
                message_at=NOW - timedelta(hours=2),
            )
        )
        for service_name, resource_name, day, hour, status, upcoming in slots:
            service, resource = services[service_name], resources[resource_name]
            start = _local(day, hour.format(h=10 + 2 * i, e=f"{9 + i:02d}"))
            appointment = Appointment(
                organization_id=org_id,
                contact_id=cid,
                pet_id=pet.id,
                service_id=service.id or 0,
                resource_id=resource.id or 0,
                starts_at=start,
                ends_at=start + timedelta(minutes=service.duration_minutes),
                status=status,  # type: ignore[arg-type]
                price_cents=service.price_cents,
                source="staff",
            )
            session.add(appointment)
            session.flush()
            (shop.upcoming if upcoming else shop.past).append(appointment.id or 0)
        shop.contacts.append(cid)
        shop.names.append(name)
        shop.phones.append(phone)
        shop.pets.append(pet_name)
        shop.conversations.append(conversation.id or 0)
    return shop


def build_world(session: Session) -> World:
    """Organization A (the example shop) and B (a copy with its own everything)."""
    a = _shop(
        session,
        EXAMPLE_ORG.read_text(),
        [("Marina Alfa", "5511977776666", "Rex"), ("Paulo Alfa", "5511966665555", "Toby")],
    )
    b = _shop(
        session,
        _other_spec_text(),
        [("Zuleika Beta", "5521988881111", "Xerxes"), ("Yara Beta", "5521988882222", "Wolfgang")],
    )
    zeta = Service(
        organization_id=b.org_id,
        name=B_ONLY_SERVICE,
        category="hidratação",
        duration_minutes=30,
        price_cents=77_777,
    )
    session.add(zeta)
    session.flush()
    carla = session.exec(
        select(Resource).where(Resource.organization_id == b.org_id, Resource.name == "Carla")
    ).one()
    session.add(
        ResourceService(
            organization_id=b.org_id, resource_id=carla.id or 0, service_id=zeta.id or 0
        )
    )
    start = _local("2026-11-24", "16:00")
    session.add(
        Appointment(
            organization_id=b.org_id,
            contact_id=b.contacts[0],
            service_id=zeta.id or 0,
            resource_id=carla.id or 0,
            starts_at=start,
            ends_at=start + timedelta(minutes=30),
            status="completed",
            price_cents=77_777,
            source="staff",
        )
    )
    for shop, key, secret, verify in (
        (a, A_CLOUD, A_SECRET, A_VERIFY),
        (b, B_CLOUD, B_SECRET, B_VERIFY),
    ):
        session.add(
            WhatsAppInstance(
                organization_id=shop.org_id,
                provider="cloud",
                instance=key,
                phone_number_id=key,
                api_url="http://127.0.0.1:9",
                access_token="token",
                app_secret=secret,
                verify_token=verify,
            )
        )
    session.commit()
    return World(a, b)


_counter = itertools.count()


@pytest.fixture(scope="module")
def shared_url(services: ServiceUrls, template_database: str) -> Iterator[str]:
    """A database at the newest schema, shared by one module's tests."""
    name = f"zapvet_t_{os.getpid()}_sec{next(_counter)}"
    yield db.create_database(services.database_url, name, template=template_database)
    db.drop_database(services.database_url, name)


@pytest.fixture(scope="module")
def shared_engine(shared_url: str) -> Iterator[Engine]:
    engine = db.build_engine(shared_url, pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def world(shared_engine: Engine) -> World:
    """Both shops, built once per module in the shared database."""
    with Session(shared_engine, expire_on_commit=False) as session:
        return build_world(session)


@pytest.fixture
async def shared_deps(shared_url: str) -> AsyncIterator[ToolDeps]:
    """Tool dependencies on the shared database, with the clock frozen at NOW."""
    engine = db.build_async_engine(shared_url, pool_size=2)
    yield ToolDeps(sessions=db.async_session_maker(engine), clock=lambda: NOW)
    await engine.dispose()


# -- looking at the rows --------------------------------------------------------------------


def org_snapshot(engine: Engine, org_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table that belongs to `org_id`, in id order."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            if "organization_id" in table.columns:
                where = "organization_id = :org"
            elif table.name == "organizations":
                where = "id = :org"
            else:
                continue
            order = "id" if "id" in table.columns else "1"
            sql = f"SELECT * FROM {table.name} WHERE {where} ORDER BY {order}"
            found[table.name] = [tuple(row) for row in conn.execute(text(sql), {"org": org_id})]
    return found


def restore(engine: Engine, org_id: int, before: dict[str, list[tuple[Any, ...]]]) -> None:
    """Put `org_id`'s rows back as `before` (an `org_snapshot`): drop new rows, undo edits."""
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            if table.name not in before or "id" not in table.columns:
                continue
            names = list(table.columns.keys())
            old = {row[names.index("id")]: row for row in before[table.name]}
            column = table.c.organization_id if "organization_id" in table.columns else table.c.id
            for row in conn.execute(table.select().where(column == org_id)).all():
                if row.id not in old:
                    conn.execute(table.delete().where(table.c.id == row.id))
                elif tuple(row) != old[row.id]:
                    values = dict(zip(names, old[row.id], strict=True))
                    conn.execute(table.update().where(table.c.id == row.id).values(values))


def row_counts(engine: Engine) -> dict[str, int]:
    """How many rows every table of the public schema holds (one round trip)."""
    names = sorted(table.name for table in SQLModel.metadata.sorted_tables)
    counts = ", ".join(f'(SELECT count(*) FROM "{name}")' for name in names)
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {counts}")).one()
    return dict(zip(names, (int(n) for n in row), strict=True))


def full_snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, for probes that must change nothing at all."""
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(row) for row in conn.execute(text(f"SELECT * FROM {table.name} ORDER BY 1"))
            ]
            for table in SQLModel.metadata.sorted_tables
        }


# -- the bridge -----------------------------------------------------------------------------


@dataclass
class Bridge:
    """The bridge app on loopback, with a queue that only records drain requests."""

    origin: str
    queue: Recorder


@pytest.fixture(scope="module")
def bridge(shared_url: str, world: World, services: ServiceUrls) -> Iterator[Bridge]:
    """The bridge over the module's shared database (with both shops in it)."""
    namespace = f"zt{uuid.uuid4().hex[:10]}"
    queue = Recorder()
    state = bridge_state_factory(
        shared_url,
        services.redis_url,
        namespace=namespace,
        pool_size=4,
        queue=queue,  # type: ignore[arg-type]
    )
    server = BackgroundServer(build_app(state), name="zapvet-bridge-security")
    server.start()
    try:
        yield Bridge(server.origin, queue)
    finally:
        server.stop()
        purge(services.redis_url, namespace)
