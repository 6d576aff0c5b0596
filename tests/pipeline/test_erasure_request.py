"""A customer asking in the chat to have their data erased: they are told the shop will
confirm, the model is never called, each owner number gets a `forget_client` proposal and a
message saying so, and the owner's "sim" erases the data (never the model alone)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from tests.conftest import start_conversation
from tests.pipeline.conftest import echo, rows
from tests.pipeline.support import Recorder
from tests.pipeline.test_drain_rounds import text_from
from zapvet.commands.confirmation import resolve
from zapvet.commands.privacy import is_forgotten
from zapvet.commands.proposals import Owner
from zapvet.graphs.replies import ERASURE_ACK, erasure_request
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import AuroraOwnerNumber, AuroraPendingAction, Contact, Organization
from zapvet.queue.drain import Outcome, drain_conversation
from zapvet.queue.resources import Resources, build_resources

ANA = "5511970007777"


@pytest.mark.parametrize(
    "text",
    [
        "apaga meus dados",
        "Quero que vocês excluam meu cadastro, por favor",
        "podem remover minhas informações?",
        "esqueçam meus dados!!",
        "gostaria de deletar minha conta",
    ],
)
def test_a_request_to_erase_is_recognised(text: str) -> None:
    assert erasure_request(text)


@pytest.mark.parametrize(
    "text",
    [
        "não apaguem meus dados",
        "apaga o horário de sábado",
        "quero atualizar meus dados",
        "meu cadastro está certo?",
        "pode remover a tosa do pedido",
    ],
)
def test_other_messages_are_not_a_request_to_erase(text: str) -> None:
    assert not erasure_request(text)


@pytest.fixture
def model() -> ScriptedChatModel:
    return ScriptedChatModel(responder=echo)


@pytest.fixture
async def resources(database_url: str, model: ScriptedChatModel) -> AsyncIterator[Resources]:
    res = build_resources(database_url, lambda: model, pool_size=4)
    res.send_inline = False
    yield res
    await res.close()


@pytest.mark.anyio
async def test_the_owner_is_asked_and_their_sim_erases(
    resources: Resources,
    model: ScriptedChatModel,
    session: Session,
    engine: Engine,
    petfeliz: Organization,
) -> None:
    context = start_conversation(session, petfeliz, ANA)
    contact = session.get(Contact, context.contact_id)
    assert contact is not None
    contact.name = "Ana Paula"
    session.commit()
    text_from(session, petfeliz, context.conversation_id, "oi, quero que vocês apaguem meus dados")
    queue = Recorder()
    outcome = await drain_conversation(resources, queue, context.conversation_id)
    assert outcome is Outcome.ANSWERED
    assert model.calls == []  # decided without the model
    replies = rows(
        engine,
        "SELECT content FROM messages WHERE conversation_id = :c AND direction = 'outgoing'",
        c=context.conversation_id,
    )
    assert replies == [(ERASURE_ACK,)]
    (number,) = session.exec(select(AuroraOwnerNumber)).all()
    (proposal,) = session.exec(select(AuroraPendingAction)).all()
    assert (proposal.action, proposal.payload) == ("forget_client", {"contact_id": contact.id})
    assert proposal.owner_number_id == number.id and "Ana Paula" in proposal.preview
    (alert,) = rows(
        engine, "SELECT id, content FROM aurora_proactive_messages WHERE owner_number_id = :n",
        n=number.id,
    )  # fmt: skip
    assert queue.proactive_ids == [alert[0]] and "Responda 'sim'" in alert[1]

    # Asking again the same day asks the owner nothing new.
    text_from(session, petfeliz, context.conversation_id, "apaga meus dados")
    await drain_conversation(resources, queue, context.conversation_id)
    assert len(session.exec(select(AuroraPendingAction)).all()) == 1

    assert petfeliz.id is not None and number.id is not None
    async with resources.sessions() as async_session, async_session.begin():
        done = await resolve(async_session, Owner(petfeliz.id, number.id), "yes", resources.clock())
    assert done is not None and done.startswith("Feito: os dados pessoais do cliente")
    session.expire_all()
    forgotten = session.get(Contact, contact.id)
    assert forgotten is not None and is_forgotten(forgotten)
