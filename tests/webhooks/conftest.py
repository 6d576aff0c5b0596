"""Shared set-up: the example shop with a `[[webhooks]]` endpoint at a loopback receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import EXAMPLE_ORG
from zapvet import db
from zapvet.models import Appointment, Contact, Organization, Pet, Resource, Service
from zapvet.org import apply_spec, parse_spec
from zapvet.testing.receiver import WebhookReceiver

SECRET = "whsec-test-0123456789abcdef"
EVERY_EVENT = [
    "appointment.created",
    "appointment.rescheduled",
    "appointment.cancelled",
    "appointment.completed",
    "appointment.no_show",
    "contact.created",
    "contact.updated",
    "pet.created",
    "conversation.escalated",
    "conversation.handed_back",
    "message.received",
    "message.sent",
]


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
