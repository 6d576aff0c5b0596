"""docs/webhooks/*.schema.json describe exactly what receivers get: every event type's body,
built by `emit` from real rows and enveloped as `attempt` does, validates against its schema;
the verification code docs/webhooks.md gives receivers accepts zapvet's signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import REPO
from tests.webhooks.conftest import SECRET, apply_text, book, with_webhook
from zapvet.models import Appointment, Contact, Conversation, Message, Organization
from zapvet.webhooks.delivery import envelope
from zapvet.webhooks.events import EVENT_TYPES, TEST_EVENT, EventType, emit
from zapvet.webhooks.probe import TEST_DATA
from zapvet.webhooks.signing import sign

pytestmark = pytest.mark.anyio

SCHEMAS = REPO / "docs" / "webhooks"
NOW = datetime(2026, 12, 6, 13, 30, 15, 123456, tzinfo=UTC)


def validator(event_type: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{event_type}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def errors(event_type: str, body: bytes) -> list[str]:
    """Why `body` does not match `event_type`'s schema (empty: it does)."""
    found = validator(event_type).iter_errors(json.loads(body))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found]


def test_every_event_type_has_a_schema_and_no_other_file_is_there() -> None:
    names = sorted(path.name for path in SCHEMAS.glob("*.schema.json"))
    assert names == sorted(f"{name}.schema.json" for name in (*EVENT_TYPES, TEST_EVENT))
    for name in (*EVENT_TYPES, TEST_EVENT):
        assert json.loads((SCHEMAS / f"{name}.schema.json").read_text())["properties"]["type"] == {
            "const": name
        }


class Shop:
    """petfeliz with an endpoint listening to everything, and rows of every kind."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.org = apply_text(session, with_webhook("http://127.0.0.1:9/hook"))
        self.appointment = book(session, self.org)
        self.contact = self.add(Contact(organization_id=self.org_id, phone="5511955554444"))
        self.petless = self.add(
            Appointment(
                organization_id=self.org_id,
                contact_id=self.contact.id or 0,
                pet_id=None,
                service_id=self.appointment.service_id,
                resource_id=self.appointment.resource_id,
                starts_at=self.appointment.starts_at + timedelta(hours=2),
                ends_at=self.appointment.ends_at + timedelta(hours=2),
                price_cents=0,
                source="staff",
            )
        )
        self.escalated = self.add(
            Conversation(
                organization_id=self.org_id,
                contact_id=self.appointment.contact_id,
                status="escalated",
                escalation_reason="quer falar com a veterinária",
                escalated_at=NOW,
            )
        )
        self.active = self.add(
            Conversation(organization_id=self.org_id, contact_id=self.contact.id or 0)
        )
        self.incoming = self.add(
            Message(
                organization_id=self.org_id,
                conversation_id=self.escalated.id or 0,
                whatsapp_message_id="3EB0C767D26A1B2C",
                direction="incoming",
                content="Oi, o Rex pode tomar banho amanhã?",
                message_at=NOW,
            )
        )
        self.outgoing = self.add(
            Message(
                organization_id=self.org_id,
                conversation_id=self.active.id or 0,
                direction="outgoing",
                content="Claro! Temos horário às 14:00.",
                sent_by_ai=True,
                status="sent",
                message_at=NOW,
            )
        )

    @property
    def org_id(self) -> int:
        assert self.org.id is not None
        return self.org.id

    def add(self, row: Any) -> Any:
        self.session.add(row)
        self.session.commit()
        return row


async def emitted(
    sessions: async_sessionmaker[AsyncSession],
    shop: Shop,
    event_type: EventType,
    about: int,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The body `attempt` would post for a fresh `event_type` event about row `about`."""
    async with sessions() as session, session.begin():
        connection = await session.connection()
        await emit(
            connection, event_type, organization_id=shop.org_id, about=about, now=NOW, extra=extra
        )
        row = (
            await connection.execute(
                text(
                    "SELECT v.uid, v.type, v.created_at, o.slug, o.timezone, v.data"
                    "  FROM webhook_events v JOIN organizations o ON o.id = v.organization_id"
                    " ORDER BY v.id DESC LIMIT 1"
                )
            )
        ).one()
    assert row[1] == event_type
    return envelope(*row)


async def test_every_event_matches_its_schema(
    session: Session, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = Shop(session)
    booked, free = shop.appointment.id or 0, shop.petless.id or 0
    previous = {
        "starts_at": "2026-12-10T12:00:00Z",
        "ends_at": "2026-12-10T12:30:00Z",
        "resource_id": shop.appointment.resource_id,
    }
    cases: list[tuple[EventType, int, dict[str, Any] | None]] = [
        ("appointment.created", booked, None),
        ("appointment.created", free, None),  # no pet, no name
        ("appointment.rescheduled", booked, {"previous": previous}),
        ("appointment.rescheduled", free, None),
        ("appointment.cancelled", booked, None),
        ("appointment.completed", booked, None),
        ("appointment.no_show", free, None),
        ("contact.created", shop.contact.id or 0, None),
        ("contact.updated", shop.appointment.contact_id, {"changes": ["name", "status"]}),
        ("contact.updated", shop.contact.id or 0, None),
        ("pet.created", shop.appointment.pet_id or 0, None),
        ("conversation.escalated", shop.escalated.id or 0, None),
        ("conversation.handed_back", shop.active.id or 0, None),
        ("message.received", shop.incoming.id or 0, None),
        ("message.sent", shop.outgoing.id or 0, None),
    ]
    assert {case[0] for case in cases} == set(EVENT_TYPES)
    for event_type, about, extra in cases:
        body = await emitted(sessions, shop, event_type, about, extra)
        assert errors(event_type, body) == [], (event_type, body)

    # The schemas are strict enough to fail: another type's body, an unknown field.
    contact = await emitted(sessions, shop, "contact.created", shop.contact.id or 0)
    assert errors("contact.updated", contact) == ["type: 'contact.updated' was expected"]
    assert errors("appointment.created", contact) != []
    tampered = json.loads(contact)
    tampered["data"]["contact"]["email"] = "x@example.com"
    assert errors("contact.created", json.dumps(tampered).encode()) != []


async def test_message_events_carry_text_only_when_the_organization_allows_it(
    session: Session, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = Shop(session)
    without = await emitted(sessions, shop, "message.received", shop.incoming.id or 0)
    assert errors("message.received", without) == []
    message = json.loads(without)["data"]["message"]
    assert "text" not in message and message["by"] == "contact"
    assert message["whatsapp_message_id"] == "3EB0C767D26A1B2C"
    sent = await emitted(sessions, shop, "message.sent", shop.outgoing.id or 0)
    assert "whatsapp_message_id" not in json.loads(sent)["data"]["message"]  # none yet

    session.execute(text("UPDATE ai_settings SET webhook_message_text = true"))
    session.commit()
    received = await emitted(sessions, shop, "message.received", shop.incoming.id or 0)
    assert errors("message.received", received) == []
    assert json.loads(received)["data"]["message"]["text"] == "Oi, o Rex pode tomar banho amanhã?"
    sent = await emitted(sessions, shop, "message.sent", shop.outgoing.id or 0)
    assert errors("message.sent", sent) == []
    replied = json.loads(sent)["data"]["message"]
    assert (replied["text"], replied["by"], replied["sent_by_ai"]) == (
        "Claro! Temos horário às 14:00.",
        "ai",
        True,
    )


def test_the_test_event_matches_its_schema(session: Session) -> None:
    org = apply_text(session, with_webhook("http://127.0.0.1:9/hook"))
    assert isinstance(org, Organization)
    body = envelope(uuid4(), TEST_EVENT, NOW, org.slug, org.timezone, TEST_DATA)
    assert errors(TEST_EVENT, body) == []
    assert json.loads(body)["created_at"] == "2026-12-06T13:30:15.123456Z"


def test_the_schemas_are_listed_in_the_docs() -> None:
    guide = (REPO / "docs" / "webhooks.md").read_text()
    for name in (*EVENT_TYPES, TEST_EVENT):
        assert f"webhooks/{name}.schema.json" in guide, name


def test_the_documented_python_verification_accepts_zapvets_signatures_only() -> None:
    guide = (REPO / "docs" / "webhooks.md").read_text()
    code = guide.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/webhooks.md", "exec"), namespace)
    verify = namespace["verify"]
    body = envelope(uuid4(), TEST_EVENT, NOW, "petfeliz", "America/Sao_Paulo", TEST_DATA)
    header = sign(SECRET, body, 1_700_000_000)
    assert verify(SECRET, header, body, now=1_700_000_000 + 299)
    assert not verify(SECRET, header, body, now=1_700_000_000 + 301)  # replayed later
    assert not verify(SECRET, header, body + b" ", now=1_700_000_000)
    assert not verify("another-secret-0000", header, body, now=1_700_000_000)
    assert not verify(SECRET, header.split(",")[1], body, now=1_700_000_000)  # no t=
