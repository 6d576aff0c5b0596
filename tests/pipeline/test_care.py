"""Care invitations through the scheduler and the outbox: two schedulers and two workers at
once still send one invitation, to the tutor's chat, in the conversation's history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from tests.conftest import SAO_PAULO
from tests.fixtures_day import add
from tests.pipeline.conftest import rows
from tests.pipeline.support import Recorder
from zapvet.graphs.history import to_langchain
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import Message, Organization, Resource, Service
from zapvet.proactive.wording import CARE_OPT_OUT
from zapvet.queue.outbox import send_outgoing, stage_proactive
from zapvet.queue.resources import Resources, build_resources
from zapvet.queue.scheduler import tick
from zapvet.testing.gateways import FakeEvolutionAPI

pytestmark = pytest.mark.anyio
#: Thursday 3 December 2026, 10:00 in São Paulo: Marina's pet's banho of 12/11 is due.
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=SAO_PAULO)
MARINA = "5511977776666"


@pytest.fixture
def due_banho(session: Session, petfeliz: Organization) -> None:
    banho = session.exec(select(Service).where(Service.name == "Banho")).one()
    carla = session.exec(select(Resource).where(Resource.name == "Carla")).one()
    add(session, petfeliz, MARINA, "Marina", banho, carla, NOW - timedelta(days=21), "completed")
    session.commit()


@pytest.fixture
async def workers(database_url: str) -> AsyncIterator[tuple[Resources, Resources]]:
    pair = tuple(
        build_resources(database_url, ScriptedChatModel, pool_size=4, clock=lambda: NOW)
        for _ in range(2)
    )
    yield pair[0], pair[1]
    for res in pair:
        await res.close()


@pytest.mark.usefixtures("due_banho")
async def test_two_schedulers_and_two_workers_send_the_invitation_once_into_the_conversation(
    engine: Engine, gateway: FakeEvolutionAPI, workers: tuple[Resources, Resources]
) -> None:
    recorders = (Recorder(), Recorder())
    reports = await asyncio.gather(
        *(tick(res.sessions, rec, NOW) for res, rec in zip(workers, recorders, strict=True))
    )
    assert sum(report.care for report in reports) == 1
    enqueued = sorted(set(recorders[0].proactive_ids + recorders[1].proactive_ids))
    assert len(enqueued) == 1
    outbox: list[int] = []
    for _ in range(2):  # the job delivered twice, each time to both workers
        staged = await asyncio.gather(*(stage_proactive(res, enqueued[0]) for res in workers))
        outbox += [message_id for message_id in staged if message_id is not None]
    assert len(outbox) == 1
    await asyncio.gather(*(send_outgoing(res, outbox[0], last_attempt=True) for res in workers))

    (sent,) = gateway.sent
    assert sent.chat_id == MARINA
    assert "Banho de Pet de Marina" in sent.text and sent.text.endswith(CARE_OPT_OUT)
    assert rows(engine, "SELECT status FROM aurora_proactive_messages") == [("sent",)]
    with Session(engine) as session:
        stored = session.exec(select(Message).where(Message.direction == "outgoing")).one()
        history = to_langchain([stored])
    assert stored.sent_by_ai and stored.status == "sent" and stored.content == sent.text
    assert (stored.meta or {}).get("kind") == "care_invitation"
    assert [message.type for message in history] == ["ai"]  # the agent sees it next turn

    later = await tick(workers[0].sessions, Recorder(), NOW + timedelta(hours=1))
    assert later.care == 0
