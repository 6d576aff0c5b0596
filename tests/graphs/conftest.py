"""Fixtures shared by the graph tests."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from zapvet.models import AuroraOwnerNumber, Contact, Conversation, Organization
from zapvet.tools.context import AuroraContext


@pytest.fixture
def owner(session: Session, petfeliz: Organization) -> AuroraContext:
    number = session.exec(select(AuroraOwnerNumber)).one()
    assert petfeliz.id and number.id
    contact = Contact(organization_id=petfeliz.id, phone=number.phone, name=number.name)
    session.add(contact)
    session.flush()
    conversation = Conversation(organization_id=petfeliz.id, contact_id=contact.id or 0)
    session.add(conversation)
    session.commit()
    return AuroraContext(
        organization_id=petfeliz.id,
        owner_number_id=number.id,
        contact_id=contact.id or 0,
        conversation_id=conversation.id or 0,
    )
