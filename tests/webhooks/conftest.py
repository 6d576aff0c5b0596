"""Shared set-up: the example shop with a `[[webhooks]]` endpoint at a loopback receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import EXAMPLE_ORG
from zapvet import db
from zapvet.models import Appointment, Contact, Organization, Pet, Resource, Service
from zapvet.org import apply_spec, parse_spec
from zapvet.testing.receiver import WebhookReceiver
from zapvet.testing.stack import MovableClock
from zapvet.webhooks.delivery import attempt, claim_due
from zapvet.webhooks.events import EVENT_TYPES, emit

SECRET = "whsec-test-0123456789abcdef"
EVERY_EVENT = list(EVENT_TYPES)


def with_webhook(
    url: str,
    events: list[str] | None = None,
    *,
    secret: str = SECRET,
    private: bool = True,
    extra: str = "",
) -> str:
    """The example organization file with one `[[webhooks]]` entry (and `extra` lines)."""
    listed = ", ".join(f'"{name}"' for name in (events or EVERY_EVENT))
    return (
        EXAMPLE_ORG.read_text()
        + "\n[[webhooks]]\n"
        + f'url = "{url}"\nsecret = "{secret}"\nevents = [{listed}]\n'
        + f"allow_private_targets = {'true' if private else 'false'}\n"
        + extra
    )


def apply_text(session: Session, text: str) -> Organization:
    report = apply_spec(session, parse_spec(text))
    session.commit()
    org = session.get(Organization, report.organization_id)
    assert org is not None
    return org


def book(
    session: Session, org: Organization, *, phone: str = "5511977776666", hour: int = 13
) -> Appointment:
    assert org.id is not None
    contact = Contact(organization_id=org.id, phone=phone, name="Maria Souza")
    session.add(contact)
    session.flush()
    pet = Pet(organization_id=org.id, contact_id=contact.id or 0, name="Rex", species="cão")
    session.add(pet)
    service = session.exec(select(Service).where(Service.organization_id == org.id)).first()
    resource = session.exec(select(Resource).where(Resource.organization_id == org.id)).first()
    assert service is not None and resource is not None
    session.flush()
    starts = datetime(2026, 12, 10, hour, 0, tzinfo=UTC)
    appointment = Appointment(
        organization_id=org.id,
        contact_id=contact.id or 0,
        pet_id=pet.id,
        service_id=service.id or 0,
        resource_id=resource.id or 0,
        starts_at=starts,
        ends_at=starts + timedelta(minutes=service.duration_minutes),
        price_cents=service.price_cents,
    )
    session.add(appointment)
    session.commit()
    return appointment


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.build_async_engine(database_url, pool_size=4)
    yield db.async_session_maker(engine)
    await engine.dispose()


async def emit_about(
    sessions: async_sessionmaker[AsyncSession],
    org: Organization,
    appointment: Appointment,
    event_type: str = "appointment.created",
    now: datetime | None = None,
) -> None:
    async with sessions() as session, session.begin():
        await emit(
            await session.connection(),
            event_type,  # type: ignore[arg-type]
            organization_id=org.id or 0,
            about=appointment.id or 0,
            now=now or datetime.now(UTC),
        )


def deliveries(session: Session) -> list[tuple[object, ...]]:
    return [
        tuple(row)
        for row in session.execute(
            text(
                "SELECT d.id, v.type, d.status, d.attempts, d.last_status_code"
                "  FROM webhook_deliveries d JOIN webhook_events v ON v.id = d.event_id"
                " ORDER BY d.id"
            )
        )
    ]


@dataclass
class Shop:
    """The example shop with an endpoint at the receiver, one booked appointment, a clock
    tests move, and what the scheduler and the actor do."""

    session: Session
    sessions: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    org: Organization
    appointment: Appointment
    clock: MovableClock = field(default_factory=MovableClock)

    async def emit(
        self, event_type: str = "appointment.created", about: Appointment | None = None
    ) -> None:
        await emit_about(
            self.sessions, self.org, about or self.appointment, event_type, now=self.clock()
        )

    async def claim(self) -> list[int]:
        async with self.sessions() as session, session.begin():
            return await claim_due(session, self.clock())

    async def run_due(self) -> list[str]:
        """Claim what is due at `clock()` and attempt each, with the next of its line as the
        actor chains it; each attempt's result."""
        due, results = await self.claim(), []
        while due:
            done = await attempt(self.sessions, self.http, due.pop(0), clock=self.clock)
            results.append(done.result)
            if done.following is not None:
                due.append(done.following)
        return results


@pytest.fixture
async def shop(
    session: Session, sessions: async_sessionmaker[AsyncSession], receiver: WebhookReceiver
) -> AsyncIterator[Shop]:
    org = apply_text(session, with_webhook(receiver.url))
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as http:
        yield Shop(session, sessions, http, org, book(session, org))
