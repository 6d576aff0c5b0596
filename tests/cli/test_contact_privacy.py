"""LGPD from the command line: `zapvet contact export` holds everything stored about a person,
`zapvet contact forget` erases it while the owner's figures for past periods stay the same,
and no table that references a person escapes either."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlmodel import Session, SQLModel, select

from tests.conftest import SAO_PAULO, zapvet
from tests.fixtures_day import DAY, seed_day
from zapvet import db
from zapvet.analytics import figures
from zapvet.commands.privacy import COVERED, pseudonym
from zapvet.embedded import ServiceUrls
from zapvet.models import (
    AIInteraction,
    AuditLog,
    AuroraProactiveMessage,
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    Organization,
    Pet,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)


def _env(database_url: str, services: ServiceUrls) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "REDIS_URL": services.redis_url}


def person(session: Session, org: Organization) -> tuple[Contact, str]:
    """One of the seeded day's clients, given a phone identity, a chat with a transcribed
    voice note, an AI turn, a reminder and an audit row (what export and forget must reach)."""
    contact = session.exec(
        select(Contact).where(Contact.organization_id == org.id).order_by(Contact.id)
    ).first()
    assert contact is not None and contact.id is not None and org.id is not None
    phone = "5511977776666"
    contact.phone, contact.name, contact.notes = phone, "Marina Souza", "prefere sábado"
    session.add(
        ContactIdentity(
            organization_id=org.id, contact_id=contact.id, kind="phone", value=phone[:4] + phone[5:]
        )
    )
    conversation = Conversation(
        organization_id=org.id, contact_id=contact.id, escalation_reason="pediu a Marina"
    )
    session.add(conversation)
    session.flush()
    session.add_all(
        [
            Message(
                organization_id=org.id,
                conversation_id=conversation.id or 0,
                chat_id=f"{phone}@s.whatsapp.net",
                direction="incoming",
                message_type="audio",
                content="quero banho pro Thor",
                status="processed",
                meta={"media": {"kind": "audio", "transcript": "quero banho pro Thor"}},
                message_at=DAY - timedelta(days=1),
            ),
            AIInteraction(
                organization_id=org.id,
                conversation_id=conversation.id,
                ai_type="client",
                status="error",
                error_message="Marina Souza sem pet",
                input_tokens=100,
            ),
            AuroraProactiveMessage(
                organization_id=org.id,
                contact_id=contact.id,
                message_type="appointment_reminder",
                content="Oi, Marina! Lembrete do banho do Thor",
                scheduled_for=DAY,
            ),
            AuditLog(
                organization_id=org.id,
                actor_kind="owner",
                action="block_contact",
                entity="contacts",
                entity_id=contact.id,
                before={"name": "Marina Souza", "phone": phone, "status": "active"},
                after={"name": "Marina Souza", "phone": phone, "status": "blocked"},
            ),
        ]
    )
    session.flush()
    endpoint = WebhookEndpoint(
        organization_id=org.id,
        url="https://hooks.example.com/zapvet",
        secret="whsec-test-0123456789abcdef",
        events=["contact.updated"],
    )
    session.add(endpoint)
    session.flush()
    event = WebhookEvent(
        organization_id=org.id,
        type="contact.updated",
        resource=f"contact:{contact.id}",
        contact_id=contact.id,
        data={"contact": {"id": contact.id, "name": "Marina Souza", "phone": f"+{phone}"}},
    )
    session.add(event)
    session.flush()
    session.add(
        WebhookDelivery(
            organization_id=org.id,
            event_id=event.id or 0,
            endpoint_id=endpoint.id or 0,
            resource=event.resource,
            status="delivered",
            attempts=1,
        )
    )
    session.commit()
    return contact, phone


def summary(database_url: str, org: Organization) -> tuple[Any, ...]:
    """The owner's figures for the seeded day: revenue and counts, new clients, top services."""
    assert org.id is not None
    org_id, day = org.id, date(2026, 11, 25)

    async def read() -> tuple[Any, ...]:
        engine = db.build_async_engine(database_url, pool_size=1)
        try:
            async with db.async_session_maker(engine)() as session:
                return (
                    await figures.business_summary(session, org_id, SAO_PAULO, day, day),
                    await figures.new_clients(session, org_id, SAO_PAULO, day, day),
                    await figures.top_services(session, org_id, SAO_PAULO, day, day),
                )
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_export_holds_everything_stored_about_the_person(
    session: Session,
    petfeliz: Organization,
    database_url: str,
    services: ServiceUrls,
    tmp_path: Path,
) -> None:
    seed_day(session, petfeliz)
    contact, phone = person(session, petfeliz)
    out = tmp_path / "marina.json"
    result = zapvet(
        "contact", "export", "+55 11 97777-6666", "--org", "petfeliz", "--out", str(out),
        env=_env(database_url, services),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["contact"]["name"] == "Marina Souza" and document["contact"]["phone"] == phone
    assert document["identities"] == [{"kind": "phone", "value": "551177776666"}]
    assert [p["name"] for p in document["pets"]] and document["appointments"]
    assert document["appointments"][0]["service"] and document["appointments"][0]["price_cents"]
    (chat,) = document["conversations"]
    assert chat["messages"][0]["transcript"] == "quero banho pro Thor"
    assert document["ai_interactions"][0]["input_tokens"] == 100
    assert document["proactive_messages"][0]["content"].startswith("Oi, Marina!")
    assert document["audit_log"][0]["action"] == "block_contact"
    (event,) = document["webhook_events"]
    assert event["type"] == "contact.updated" and event["id"].startswith("evt_")
    assert event["data"]["contact"]["name"] == "Marina Souza"
    assert event["deliveries"] == [
        {"endpoint_id": event["deliveries"][0]["endpoint_id"], "status": "delivered",
         "attempts": 1, "delivered_at": None}
    ]  # fmt: skip
    unknown = zapvet(
        "contact", "export", "11 96666-5555", "--org", "petfeliz", env=_env(database_url, services)
    )
    assert unknown.exit_code == 1 and "nothing is stored" in unknown.stderr


def test_forget_erases_the_person_and_leaves_the_figures_unchanged(
    session: Session,
    engine: Engine,
    petfeliz: Organization,
    database_url: str,
    services: ServiceUrls,
) -> None:
    seed_day(session, petfeliz)
    contact, phone = person(session, petfeliz)
    before = summary(database_url, petfeliz)
    env = _env(database_url, services)
    result = zapvet("contact", "forget", phone, "--org", "petfeliz", env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("forgot +5511977776666 in 'petfeliz': personal data erased")
    assert summary(database_url, petfeliz) == before  # revenue, counts, top services

    session.expire_all()
    forgotten = session.get(Contact, contact.id)
    assert forgotten is not None
    assert forgotten.phone is None and forgotten.notes is None
    assert forgotten.name == pseudonym(petfeliz.id or 0, contact.id or 0)
    assert (
        session.exec(select(ContactIdentity).where(ContactIdentity.contact_id == contact.id)).all()
        == []
    )
    assert all(pet.name.startswith("Pet ") and pet.notes is None for pet in session.exec(
        select(Pet).where(Pet.contact_id == contact.id)
    ))  # fmt: skip
    with engine.connect() as conn:
        dump = " ".join(
            str(row) for table in COVERED for row in conn.execute(text(f"SELECT * FROM {table}"))
        )
    for erased in ("Marina Souza", "Souza", "977776666", "77776666", "Thor", "prefere sábado"):
        assert erased not in dump, erased
    (audit,) = session.exec(select(AuditLog).where(AuditLog.action == "forget_contact")).all()
    assert audit.entity_id == contact.id and "Marina" not in json.dumps(audit.after)

    again = zapvet("contact", "forget", phone, "--org", "petfeliz", env=env)
    assert again.exit_code == 0 and "(no change)" in again.stdout
    gone = zapvet("contact", "export", phone, "--org", "petfeliz", env=env)
    assert gone.exit_code == 1


def _references_a_person(table: Any, person_tables: set[str]) -> bool:
    return any(fk.column.table.name in person_tables for fk in table.foreign_keys) or (
        "contact_id" in table.columns
    )


def test_every_table_that_references_a_person_is_exported_and_erased() -> None:
    # Tables that point at a contact, or at a row that does (a conversation, a pet, ...),
    # transitively; audit_log and pending actions name people in their JSON.
    reached = {"contacts"}
    changed = True
    while changed:
        changed = False
        for table in SQLModel.metadata.sorted_tables:
            if table.name not in reached and _references_a_person(table, reached):
                reached.add(table.name)
                changed = True
    assert reached | {"audit_log", "aurora_pending_actions"} <= set(COVERED), (
        f"tables with personal data that contact export/forget do not cover: "
        f"{sorted(reached - set(COVERED))} (see commands/privacy.py)"
    )
