"""Proactive messages on a Cloud API number: free text inside the 24-hour window, the kind's
template outside it, one retry as the template on 131047, and template errors reported."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from tests.conftest import EXAMPLE_ORG, SAO_PAULO
from tests.fixtures_day import add
from tests.pipeline.conftest import rows
from tests.pipeline.test_cloud import ACCESS_TOKEN, PHONE_NUMBER_ID, cloud_org_text
from zapvet.bridge.events import Status
from zapvet.bridge.ingest import ingest
from zapvet.errors import RejectedSend
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import (
    Contact,
    Conversation,
    Message,
    Organization,
    Resource,
    Service,
    WhatsAppInstance,
)
from zapvet.org import apply_spec, parse_spec
from zapvet.proactive.care import schedule_care_invitations
from zapvet.proactive.planning import schedule_daily_summaries, schedule_reminders
from zapvet.proactive.templates import template_failures
from zapvet.queue.outbox import send_outgoing, stage_proactive
from zapvet.queue.resources import Resources, build_resources
from zapvet.testing.gateways import FakeCloudAPI, FakeEvolutionAPI, SentTemplate
from zapvet.testing.stack import API_KEY, INSTANCE

pytestmark = pytest.mark.anyio

#: Thursday 26 November 2026, 19:05 in São Paulo, 40 minutes before Marina's banho.
EVENING = datetime(2026, 11, 26, 19, 5, tzinfo=SAO_PAULO)
MARINA, PEDRO = "5511977776666", "5511966665555"
REMINDER_TEMPLATE = """
[[templates]]
kind = "appointment_reminder"
name = "lembrete_horario"
language = "pt_BR"
parameters = ["cliente", "pet", "servico", "horario"]
"""


@pytest.fixture
def gateway() -> Iterator[FakeCloudAPI]:
    with FakeCloudAPI(access_token=ACCESS_TOKEN, phone_number_ids=[PHONE_NUMBER_ID]) as fake:
        fake.approve_template("lembrete_horario", "pt_BR", parameters=4)
        yield fake


@pytest.fixture
async def res(database_url: str) -> AsyncIterator[Resources]:
    resources = build_resources(database_url, ScriptedChatModel, pool_size=2, clock=lambda: EVENING)
    yield resources
    await resources.close()


def on_cloud(session: Session, gateway: FakeCloudAPI, templates: str = REMINDER_TEMPLATE) -> None:
    """The example shop moved to a Cloud API number, with these `[[templates]]`."""
    apply_spec(session, parse_spec(cloud_org_text(gateway.base_url) + templates))
    session.commit()


def banho_at_1945(
    session: Session, org: Organization, phone: str, name: str, groomer: str = "Carla"
) -> int:
    """`name`'s banho at 19:45; the contact's id."""
    banho = session.exec(select(Service).where(Service.name == "Banho")).one()
    resource = session.exec(select(Resource).where(Resource.name == groomer)).one()
    start = EVENING + timedelta(minutes=40)
    appointment = add(session, org, phone, name, banho, resource, start, "scheduled")
    session.commit()
    return appointment.contact_id


def wrote_at(session: Session, org: Organization, contact_id: int, moment: datetime) -> None:
    """The contact's last message to the shop was at `moment`."""
    assert org.id is not None
    conversation = Conversation(organization_id=org.id, contact_id=contact_id, status="closed")
    session.add(conversation)
    session.flush()
    contact = session.get(Contact, contact_id)
    assert contact is not None and conversation.id is not None
    session.add(
        Message(
            organization_id=org.id,
            conversation_id=conversation.id,
            chat_id=contact.phone,
            direction="incoming",
            content="Obrigada!",
            status="processed",
            message_at=moment,
        )
    )
    session.commit()


async def remind(res: Resources) -> list[int | None]:
    """Schedule the due reminders, then stage and send each; the outbox ids (None: skipped)."""
    async with res.sessions() as session, session.begin():
        proactive_ids = await schedule_reminders(session, EVENING)
    staged = [await stage_proactive(res, proactive_id) for proactive_id in proactive_ids]
    for message_id in staged:
        if message_id is not None:
            with contextlib.suppress(RejectedSend):  # recorded on the rows the tests read
                await send_outgoing(res, message_id, last_attempt=True)
    return staged


def reminder_states(engine: Engine) -> list[tuple[object, ...]]:
    return rows(
        engine,
        "SELECT status, error FROM aurora_proactive_messages"
        " WHERE message_type = 'appointment_reminder' ORDER BY id",
    )


async def test_cloud_inside_the_window_the_reminder_goes_out_as_free_text(
    session: Session, petfeliz: Organization, gateway: FakeCloudAPI, res: Resources
) -> None:
    on_cloud(session, gateway)
    marina = banho_at_1945(session, petfeliz, MARINA, "Marina")
    wrote_at(session, petfeliz, marina, EVENING - timedelta(hours=23))
    await remind(res)
    assert [(sent.chat_id, "Lembrete: Banho" in sent.text) for sent in gateway.sent] == [
        (MARINA, True)
    ]
    assert gateway.sent_templates == []


async def test_cloud_outside_the_window_the_reminder_goes_out_as_its_template(
    session: Session,
    petfeliz: Organization,
    gateway: FakeCloudAPI,
    res: Resources,
    engine: Engine,
) -> None:
    on_cloud(session, gateway)
    marina = banho_at_1945(session, petfeliz, MARINA, "Marina")
    wrote_at(session, petfeliz, marina, EVENING - timedelta(hours=24, minutes=1))
    [staged] = await remind(res)
    assert gateway.sent == []
    [template] = gateway.sent_templates
    assert template == SentTemplate(
        MARINA,
        "lembrete_horario",
        "pt_BR",
        ["Marina", "Pet de Marina", "Banho", "19:45"],
        template.provider_id,
    )
    [body] = [r.body for r in gateway.requests if r.path.endswith("/messages")]
    assert body["type"] == "template" and body["to"] == MARINA
    assert body["template"]["components"][0]["type"] == "body"
    assert rows(
        engine, f"SELECT status, whatsapp_message_id FROM messages WHERE id = {staged}"
    ) == [("sent", template.provider_id)]
    assert reminder_states(engine) == [("sent", None)]


async def test_cloud_a_contact_who_never_wrote_is_outside_the_window(
    session: Session, petfeliz: Organization, gateway: FakeCloudAPI, res: Resources
) -> None:
    on_cloud(session, gateway)
    banho_at_1945(session, petfeliz, MARINA, "Marina")
    await remind(res)
    assert gateway.sent == [] and len(gateway.sent_templates) == 1


async def test_cloud_a_131047_inside_our_window_is_retried_once_as_the_template(
    session: Session,
    petfeliz: Organization,
    gateway: FakeCloudAPI,
    res: Resources,
    engine: Engine,
) -> None:
    on_cloud(session, gateway)
    marina = banho_at_1945(session, petfeliz, MARINA, "Marina")
    wrote_at(session, petfeliz, marina, EVENING - timedelta(hours=23, minutes=59))
    gateway.close_window(MARINA)  # Meta's clock: the window is already closed
    await remind(res)
    sends = [r.body["type"] for r in gateway.requests if r.path.endswith("/messages")]
    assert sends == ["text", "template"]
    assert gateway.sent == [] and [t.name for t in gateway.sent_templates] == ["lembrete_horario"]
    assert reminder_states(engine) == [("sent", None)]


async def test_cloud_a_131047_without_a_template_fails_with_meta_s_reason(
    session: Session,
    petfeliz: Organization,
    gateway: FakeCloudAPI,
    res: Resources,
    engine: Engine,
) -> None:
    on_cloud(session, gateway, templates="")
    marina = banho_at_1945(session, petfeliz, MARINA, "Marina")
    wrote_at(session, petfeliz, marina, EVENING - timedelta(hours=1))
    gateway.close_window(MARINA)
    await remind(res)
    [(status, error)] = reminder_states(engine)
    assert status == "failed" and "code 131047" in str(error)
    assert gateway.sent_templates == []


async def test_cloud_outside_the_window_without_a_template_the_reminder_is_skipped_with_its_reason(
    session: Session,
    petfeliz: Organization,
    gateway: FakeCloudAPI,
    res: Resources,
    engine: Engine,
) -> None:
    on_cloud(session, gateway, templates="")
    banho_at_1945(session, petfeliz, MARINA, "Marina")
    assert await remind(res) == [None]
    assert reminder_states(engine) == [
        ("cancelled", "outside the 24-hour window and no [[templates]] for appointment_reminder")
    ]
    assert gateway.requests == []


async def test_cloud_a_refused_template_fails_is_counted_and_the_owner_is_told_once_a_day(
    session: Session,
    petfeliz: Organization,
    gateway: FakeCloudAPI,
    res: Resources,
    engine: Engine,
) -> None:
    gateway.approve_template("lembrete_horario", "pt_BR", parameters=3)  # Meta's copy differs
    on_cloud(session, gateway)
    banho_at_1945(session, petfeliz, MARINA, "Marina")
    banho_at_1945(session, petfeliz, PEDRO, "Pedro", "Marcos")
    await remind(res)
    assert gateway.sent == [] and gateway.sent_templates == []
    states = reminder_states(engine)
    assert [status for status, _ in states] == ["failed", "failed"]
    assert all("code 132000" in str(error) for _, error in states)
    assert rows(
        engine,
        "SELECT meta->>'template_error' FROM messages WHERE direction = 'outgoing' ORDER BY id",
    ) == [("132000",), ("132000",)]
    alerts = rows(
        engine,
        "SELECT owner_number_id IS NOT NULL, dedupe_key, template_values->>'modelo', content"
        " FROM aurora_proactive_messages WHERE message_type = 'template_alert'",
    )
    [(to_owner, key, name, content)] = alerts
    assert to_owner and key.startswith("template:lembrete_horario:2026-11-26:")
    assert name == "lembrete_horario" and "lembrete_horario" in content
    assert petfeliz.id is not None
    async with res.sessions() as reading:
        failures = await template_failures(
            reading, petfeliz.id, EVENING - timedelta(days=1), EVENING + timedelta(days=1)
        )
    assert failures.count == 2 and "code 132000" in (failures.last_error or "")


async def test_cloud_the_owners_daily_summary_goes_out_as_its_template(
    session: Session, petfeliz: Organization, gateway: FakeCloudAPI, res: Resources
) -> None:
    gateway.approve_template("resumo_diario", "pt_BR", parameters=3)
    on_cloud(
        session,
        gateway,
        """
[[templates]]
kind = "daily_summary"
name = "resumo_diario"
parameters = ["data", "clientes", "faturamento"]
""",
    )
    async with res.sessions() as writing, writing.begin():
        [summary] = await schedule_daily_summaries(writing, EVENING)
    staged = await stage_proactive(res, summary)
    assert staged is not None
    await send_outgoing(res, staged, last_attempt=True)
    assert [(t.name, t.parameters) for t in gateway.sent_templates] == [
        ("resumo_diario", ["quinta-feira, 26/11/2026", "0", "R$ 0,00"])
    ]
    assert gateway.sent == []


async def test_evolution_keeps_free_text_whatever_the_window(
    session: Session, petfeliz: Organization, res: Resources, engine: Engine
) -> None:
    text = EXAMPLE_ORG.read_text() + REMINDER_TEMPLATE
    apply_spec(session, parse_spec(text))
    session.commit()
    marina = banho_at_1945(session, petfeliz, MARINA, "Marina")
    wrote_at(session, petfeliz, marina, EVENING - timedelta(days=3))
    with FakeEvolutionAPI(api_key=API_KEY, instances=[INSTANCE]) as fake:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE whatsapp_instances SET api_url = %(url)s", {"url": fake.base_url}
            )
        await remind(res)
        assert [sent.text.startswith("Olá, Marina!") for sent in fake.sent] == [True]


async def test_cloud_a_care_invitation_outside_the_window_goes_out_as_its_template(
    session: Session, petfeliz: Organization, gateway: FakeCloudAPI, database_url: str
) -> None:
    # Customers due for a return have not written for weeks: on a Cloud number the
    # invitation is its template, filled from the same data as its text.
    invitation = """
[[templates]]
kind = "care_invitation"
name = "convite_retorno"
language = "pt_BR"
parameters = ["cliente", "pet", "servico", "loja"]
"""
    gateway.approve_template("convite_retorno", "pt_BR", parameters=4)
    on_cloud(session, gateway, REMINDER_TEMPLATE + invitation)
    due = datetime(2026, 12, 3, 10, 0, tzinfo=SAO_PAULO)
    banho = session.exec(select(Service).where(Service.name == "Banho")).one()
    carla = session.exec(select(Resource).where(Resource.name == "Carla")).one()
    add(session, petfeliz, MARINA, "Marina", banho, carla, due - timedelta(days=21), "completed")
    session.commit()
    res = build_resources(database_url, ScriptedChatModel, pool_size=2, clock=lambda: due)
    try:
        async with res.sessions() as async_session, async_session.begin():
            [proactive_id] = await schedule_care_invitations(async_session, due)
        staged = await stage_proactive(res, proactive_id)
        assert staged is not None
        await send_outgoing(res, staged, last_attempt=True)
    finally:
        await res.close()
    assert gateway.sent == []
    [template] = gateway.sent_templates
    assert (template.chat_id, template.name, template.parameters) == (
        MARINA,
        "convite_retorno",
        ["Marina", "Pet de Marina", "Banho", petfeliz.name],
    )


async def test_cloud_a_late_131047_resends_the_text_once_as_its_template(
    session: Session,
    petfeliz: Organization,
    gateway: FakeCloudAPI,
    res: Resources,
    engine: Engine,
) -> None:
    # Meta accepted the text (inside our window by our clock), then reported it failed with
    # 131047 in a status webhook: the reminder goes out again, once, as its template.
    on_cloud(session, gateway)
    marina = banho_at_1945(session, petfeliz, MARINA, "Marina")
    wrote_at(session, petfeliz, marina, EVENING - timedelta(hours=23))
    [staged] = await remind(res)
    assert staged is not None and len(gateway.sent) == 1

    async def status(error: str) -> None:
        [(provider_id,)] = rows(
            engine, f"SELECT whatsapp_message_id FROM messages WHERE id = {staged}"
        )
        async with res.sessions() as async_session, async_session.begin():
            instance = (
                await async_session.exec(
                    select(WhatsAppInstance).where(WhatsAppInstance.provider == "cloud")
                )
            ).one()
            await ingest(
                async_session, instance, [Status(str(provider_id), "failed", error)], EVENING
            )

    await status("131047 Re-engagement message: more than 24 hours have passed")
    assert rows(engine, f"SELECT status FROM messages WHERE id = {staged}") == [("pending",)]
    await send_outgoing(res, staged, last_attempt=True)
    [template] = gateway.sent_templates
    assert (template.chat_id, template.name) == (MARINA, "lembrete_horario")
    assert rows(engine, f"SELECT status FROM messages WHERE id = {staged}") == [("sent",)]

    await status("131047 Re-engagement message: more than 24 hours have passed")
    [(state, error)] = rows(engine, f"SELECT status, error FROM messages WHERE id = {staged}")
    assert state == "failed" and error.startswith("131047")  # once only: no loop
