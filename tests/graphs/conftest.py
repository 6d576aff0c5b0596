"""Fixtures for agent tests: the example organization, a contact in conversation, tool deps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session

from tests.conftest import EXAMPLE_ORG
from zapvet import db
from zapvet.graphs.client.context import ClientContext
from zapvet.models import Contact, Conversation, Organization
from zapvet.org import apply_spec, load_spec
from zapvet.tools.deps import ToolDeps

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
#: Wednesday 25 November 2026, 14:00 in São Paulo: "amanhã" is Thursday the 26th.
NOW = datetime(2026, 11, 25, 14, 0, tzinfo=SAO_PAULO)


@pytest.fixture
def petfeliz(session: Session) -> Organization:
    report = apply_spec(session, load_spec(EXAMPLE_ORG))
    session.commit()
    org = session.get(Organization, report.organization_id)
    assert org is not None
    return org


def start_conversation(session: Session, org: Organization, phone: str) -> ClientContext:
    assert org.id is not None
    contact = Contact(organization_id=org.id, phone=phone, name="Cliente")
    session.add(contact)
    session.flush()
    assert contact.id is not None
    conversation = Conversation(organization_id=org.id, contact_id=contact.id)
    session.add(conversation)
    session.commit()
    assert conversation.id is not None
    return ClientContext(
        organization_id=org.id, contact_id=contact.id, conversation_id=conversation.id
    )


@pytest.fixture
def client_context(session: Session, petfeliz: Organization) -> ClientContext:
    return start_conversation(session, petfeliz, "5511999999999")


@pytest.fixture
async def deps(database_url: str) -> AsyncIterator[ToolDeps]:
    engine = db.build_async_engine(database_url, pool_size=5)
    yield ToolDeps(sessions=db.async_session_maker(engine), clock=lambda: NOW)
    await engine.dispose()
