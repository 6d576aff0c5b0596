"""`[privacy]` retention, with a frozen clock: contents older than `message_retention_days`
and transcripts older than `transcript_retention_days` are erased, the rows and the figures
stay, other organizations and newer messages are untouched, and running again erases nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from tests.conftest import EXAMPLE_ORG, second_shop, start_conversation
from tests.pipeline.conftest import rows
from zapvet import db
from zapvet.commands.privacy import enforce_retention
from zapvet.errors import OrgFileError
from zapvet.models import Message, Organization, WebhookEvent
from zapvet.org import load_spec, parse_spec

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def message(session: Session, org: Organization, conversation: int, days: int, **extra: Any) -> int:
    row = Message(
        organization_id=org.id or 0,
        conversation_id=conversation,
        direction="incoming",
        status="processed",
        message_at=NOW - timedelta(days=days),
        **extra,
    )
    session.add(row)
    session.commit()
    return row.id or 0


def run(database_url: str) -> dict[str, int]:
    async def go() -> dict[str, int]:
        engine = db.build_async_engine(database_url, pool_size=1)
        try:
            async with db.async_session_maker(engine)() as session:
                return await enforce_retention(session, NOW)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_old_contents_and_transcripts_are_erased_and_the_rows_stay(
    session: Session, engine: Engine, petfeliz: Organization, database_url: str
) -> None:
    other = second_shop(session)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE ai_settings SET message_retention_days = 90, transcript_retention_days = 30"
                " WHERE organization_id = :org"
            ),
            {"org": petfeliz.id},
        )
    mine = start_conversation(session, petfeliz, "5511977776666").conversation_id
    theirs = start_conversation(session, other, "5511977776666").conversation_id
    voice = {"media": {"kind": "audio", "transcript": "quero banho", "seconds": 4}}
    ancient = message(session, petfeliz, mine, 120, content="oi", meta={"by": "staff"})
    old_voice = message(session, petfeliz, mine, 45, message_type="audio", content="", meta=voice)
    recent = message(session, petfeliz, mine, 10, message_type="audio", content="ok", meta=voice)
    elsewhere = message(session, other, theirs, 400, content="não é daqui")
    said = {"message": {"id": ancient, "text": "oi", "direction": "incoming"}}
    events = [
        WebhookEvent(
            organization_id=org.id or 0,
            type="message.received",
            resource=f"conversation:{conversation}",
            data=said,
            created_at=NOW - timedelta(days=days),
        )
        for org, conversation, days in (
            (petfeliz, mine, 120),
            (petfeliz, mine, 10),
            (other, theirs, 400),
        )
    ]
    session.add_all(events)
    session.commit()

    assert run(database_url) == {"contents": 1, "transcripts": 1, "webhook_texts": 1}
    kept = [row[0] for row in rows(engine, "SELECT data FROM webhook_events ORDER BY id")]
    assert kept == [{"message": {"id": ancient, "direction": "incoming"}}, said, said]
    found = {
        row[0]: row[1:]
        for row in rows(engine, "SELECT id, content, meta FROM messages ORDER BY id")
    }
    assert found[ancient] == ("", {"by": "staff", "erased": True})
    assert found[old_voice] == ("", {"media": {"kind": "audio", "seconds": 4}})
    assert found[recent] == ("ok", voice)
    assert found[elsewhere] == ("não é daqui", None)
    assert len(found) == 4  # nothing deleted: counts stay
    assert run(database_url) == {"contents": 0, "transcripts": 0, "webhook_texts": 0}


def test_privacy_keys_are_read_from_the_organization_file() -> None:
    spec = parse_spec(
        EXAMPLE_ORG.read_text().replace(
            "[privacy]\n",
            "[privacy]\nmessage_retention_days = 365\ntranscript_retention_days = 30\n",
        )
    )
    assert (spec.privacy.message_retention_days, spec.privacy.transcript_retention_days) == (
        365,
        30,
    )
    assert load_spec(EXAMPLE_ORG).privacy.message_retention_days is None


def test_a_retention_of_zero_days_is_refused_with_the_key_and_line() -> None:
    with pytest.raises(OrgFileError) as refused:
        parse_spec(
            EXAMPLE_ORG.read_text().replace(
                "[privacy]\n", "[privacy]\nmessage_retention_days = 0\n"
            )
        )
    assert "privacy.message_retention_days: Input should be greater than or equal to 1" in str(
        refused.value
    )
