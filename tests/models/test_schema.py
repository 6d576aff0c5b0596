"""The migrations build exactly the models' schema, and the schema guards tenant boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import BigInteger, DateTime, inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

import zapvet.models  # noqa: F401
from tests.factories import appointment, make_contact, make_org
from zapvet import db
from zapvet.models import Contact, Conversation, Message, Pet

CONTRACT_COLUMNS = {
    "organizations": {"id", "slug", "name", "timezone"},
    "whatsapp_instances": {"id", "organization_id", "provider", "instance", "api_url"},
    "aurora_owner_numbers": {"id", "organization_id", "phone", "is_active"},
    "contacts": {"id", "organization_id", "phone", "name", "status", "last_contact_at"},
    "pets": {"id", "organization_id", "contact_id", "name", "species", "breed", "age_years"},
    "conversations": {"id", "organization_id", "contact_id", "status"},
    "messages": {
        "id", "organization_id", "conversation_id", "whatsapp_message_id", "direction",
        "content", "message_type", "from_me", "sent_by_ai", "status",
    },
    "services": {"id", "organization_id", "name", "category", "duration_minutes", "price_cents"},
    "appointments": {
        "id", "organization_id", "contact_id", "pet_id", "service_id", "starts_at", "ends_at",
        "status", "price_cents",
    },
    "ai_interactions": {
        "id", "organization_id", "conversation_id", "ai_type", "status", "error_message", "model",
        "input_tokens", "output_tokens",
    },
    "aurora_proactive_messages": {
        "id", "organization_id", "owner_number_id", "message_type", "content", "scheduled_for",
        "status", "sent_at",
    },
}  # fmt: skip


def _drift(url: str) -> list[object]:
    engine = db.build_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))
    finally:
        engine.dispose()


def test_upgrading_an_empty_database_yields_exactly_the_models_schema(
    empty_database_url: str,
) -> None:
    db.upgrade(empty_database_url)
    assert _drift(empty_database_url) == []


def test_downgrade_and_upgrade_round_trip(empty_database_url: str) -> None:
    db.upgrade(empty_database_url)
    db.upgrade_to_base(empty_database_url)
    engine = db.build_engine(empty_database_url, pool_size=1)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    db.upgrade(empty_database_url)
    assert _drift(empty_database_url) == []


def test_contract_tables_have_their_columns(engine: object) -> None:
    inspector = inspect(engine)
    for table, columns in CONTRACT_COLUMNS.items():
        found = {column["name"] for column in inspector.get_columns(table)}
        assert columns <= found, f"{table} lacks {columns - found}"


def test_timestamps_are_timezone_aware_and_money_is_integer(engine: object) -> None:
    inspector = inspect(engine)
    moments = 0
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            kind, name = column["type"], f"{table}.{column['name']}"
            if isinstance(kind, DateTime):
                moments += 1
                assert kind.timezone, f"{name} is a timestamp without time zone"
            if column["name"].endswith("_cents"):
                assert isinstance(kind, BigInteger), f"{name} is {kind}"
    assert moments > 20


def test_every_table_is_scoped_by_organization(engine: object) -> None:
    inspector = inspect(engine)
    for table in inspector.get_table_names():
        if table in {"organizations", "alembic_version"}:
            continue
        columns = {column["name"] for column in inspector.get_columns(table)}
        assert "organization_id" in columns, table


def test_a_row_cannot_point_at_another_organizations_row(session: Session) -> None:
    org_a, resource_a, service_a = make_org(session, "a")
    org_b, resource_b, service_b = make_org(session, "b")
    contact_b, _ = make_contact(session, org_b, pet=None)
    assert org_a.id and contact_b.id

    session.add(Pet(organization_id=org_a.id, contact_id=contact_b.id, name="Rex", species="cão"))
    with pytest.raises(IntegrityError, match="fk_contact_id_same_org_contacts"):
        session.commit()
    session.rollback()

    contact_a, _ = make_contact(session, org_a, pet=None)
    start = datetime(2026, 11, 26, 13, tzinfo=UTC)
    session.add(appointment(org_a, resource_a, service_b, contact_a, start))
    with pytest.raises(IntegrityError, match="fk_service_id_same_org_services"):
        session.commit()
    session.rollback()

    session.add(appointment(org_a, resource_b, service_a, contact_a, start))
    with pytest.raises(IntegrityError, match="fk_resource_id_same_org_resources"):
        session.commit()


def test_an_appointment_pet_must_belong_to_the_booked_contact(session: Session) -> None:
    org, resource, service = make_org(session)
    owner, rex = make_contact(session, org, phone="5511911110000", pet="Rex")
    stranger, _ = make_contact(session, org, phone="5511922220000", pet=None)
    assert rex and rex.id
    start = datetime(2026, 11, 26, 13, tzinfo=UTC)
    session.add(appointment(org, resource, service, stranger, start, pet_id=rex.id))
    with pytest.raises(IntegrityError, match="fk_pet_id_same_contact_pets"):
        session.commit()
    session.rollback()
    session.add(appointment(org, resource, service, owner, start, pet_id=rex.id))
    session.commit()


def test_a_contact_has_one_open_conversation_at_a_time(session: Session) -> None:
    org, _, _ = make_org(session)
    contact, _ = make_contact(session, org, pet=None)
    assert org.id and contact.id
    first = Conversation(organization_id=org.id, contact_id=contact.id)
    session.add(first)
    session.commit()
    session.add(Conversation(organization_id=org.id, contact_id=contact.id, status="escalated"))
    with pytest.raises(IntegrityError, match="uq_conversations_open_per_contact"):
        session.commit()
    session.rollback()
    first.status = "closed"
    session.commit()
    session.add(Conversation(organization_id=org.id, contact_id=contact.id))
    session.commit()


def test_a_provider_message_id_is_stored_once(session: Session) -> None:
    org, _, _ = make_org(session)
    contact, _ = make_contact(session, org, pet=None)
    assert org.id and contact.id
    conversation = Conversation(organization_id=org.id, contact_id=contact.id)
    session.add(conversation)
    session.commit()
    assert conversation.id

    def message(wamid: str | None) -> Message:
        assert org.id and conversation.id
        return Message(
            organization_id=org.id,
            conversation_id=conversation.id,
            whatsapp_message_id=wamid,
            direction="incoming",
            content="oi",
            message_at=datetime.now(UTC) - timedelta(seconds=1),
        )

    session.add_all([message("wamid.1"), message(None), message(None)])
    session.commit()
    session.add(message("wamid.1"))
    with pytest.raises(IntegrityError, match="uq_messages_provider_id"):
        session.commit()


def test_identities_are_unique_per_organization(session: Session) -> None:
    from zapvet.models import ContactIdentity

    org, _, _ = make_org(session)
    first, _ = make_contact(session, org, phone="5511911110000", pet=None)
    second, _ = make_contact(session, org, phone="5511922220000", pet=None)
    assert org.id and first.id and second.id
    session.add(
        ContactIdentity(organization_id=org.id, contact_id=first.id, kind="lid", value="123@lid")
    )
    session.commit()
    session.add(
        ContactIdentity(organization_id=org.id, contact_id=second.id, kind="lid", value="123@lid")
    )
    with pytest.raises(IntegrityError):
        session.commit()
    assert isinstance(first, Contact)
