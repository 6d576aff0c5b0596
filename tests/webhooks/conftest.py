"""Shared set-up: the example shop with a `[[webhooks]]` endpoint at a loopback receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import EXAMPLE_ORG
from zapvet import db
from zapvet.models import Organization
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


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.build_async_engine(database_url, pool_size=4)
    yield db.async_session_maker(engine)
    await engine.dispose()
