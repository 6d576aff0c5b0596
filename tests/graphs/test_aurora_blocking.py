"""Aurora's block/unblock commands: a preview, then the owner's "sim", audited; never an owner
number, never another shop's contact."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from sqlmodel import Session, col, select

from tests.conftest import NOW, second_shop
from tests.graphs.test_aurora_commands import call, confirmed_command
from zapvet.graphs.aurora.graph import build_graph
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import AuditLog, AuroraPendingAction, Contact, ContactIdentity, Organization
from zapvet.tools.context import AuroraContext
from zapvet.tools.deps import ToolDeps

pytestmark = pytest.mark.anyio


@pytest.fixture
def marina(session: Session, petfeliz: Organization) -> Contact:
    """A client stored with her phone only, as rows written before identities existed."""
    contact = Contact(organization_id=petfeliz.id or 0, phone="5511977776666", name="Marina")
    session.add(contact)
    session.commit()
    return contact


async def refused(deps: ToolDeps, owner: AuroraContext, tool: str, **args: object) -> str:
    """One owner turn in which the model calls `tool` and the tool refuses: its words."""
    model = ScriptedChatModel(
        script=[AIMessage("", tool_calls=[call(tool, **args)]), AIMessage("Ok.")]
    )
    turn = await run_turn(build_graph(model, deps), owner, [HumanMessage("Bloqueia esse número")])
    (answer,) = [m for m in turn.messages if m.type == "tool"]
    assert getattr(answer, "status", None) == "error", answer.content
    return str(answer.content)


async def test_block_contact_command_blocks_after_yes_and_audits(
    deps: ToolDeps,
    owner: AuroraContext,
    marina: Contact,
    session: Session,
) -> None:
    reply, before, after, audit = await confirmed_command(
        deps, owner, session, marina, "block_contact", {"client": "Marina"},
        preview="bloquear Marina (+5511977776666): o robô não responderá mais.",
    )  # fmt: skip

    assert reply.reply == (
        "Feito: número bloqueado. As mensagens dele serão guardadas, sem resposta."
    )
    assert (before["status"], after["status"]) == ("active", "blocked")
    assert audit.before and audit.after
    assert (audit.before["status"], audit.after["status"]) == ("active", "blocked")
    # The bridge matches by identity: the number is now recorded as this contact's.
    identity = session.exec(select(ContactIdentity)).one()
    assert (identity.contact_id, identity.kind, identity.value) == (
        marina.id,
        "phone",
        "551177776666",
    )


async def test_unblock_contact_command_unblocks_after_yes(
    deps: ToolDeps,
    owner: AuroraContext,
    marina: Contact,
    session: Session,
) -> None:
    marina.status = "blocked"
    session.add(marina)
    session.commit()
    reply, before, after, audit = await confirmed_command(
        deps, owner, session, marina, "unblock_contact", {"client": "11 7777-6666"},
        preview="desbloquear Marina (+551177776666): o robô voltará a responder.",
    )  # fmt: skip
    assert reply.reply == (
        "Feito: número desbloqueado. As próximas mensagens dele serão respondidas."
    )
    assert (before["status"], after["status"], audit.action) == (
        "blocked",
        "active",
        "unblock_contact",
    )


async def test_block_contact_of_a_number_that_never_wrote_creates_it_blocked(
    deps: ToolDeps, owner: AuroraContext, session: Session, petfeliz: Organization
) -> None:
    model = ScriptedChatModel(
        script=[
            AIMessage("", tool_calls=[call("block_contact", client="+55 21 96666-5555")]),
            AIMessage("Confirma?"),
        ]
    )
    graph = build_graph(model, deps)
    history = [HumanMessage("Bloqueia o 21 96666-5555")]
    await run_turn(graph, owner, history)
    assert session.exec(select(Contact).where(Contact.phone == "5521966665555")).first() is None
    done = await run_turn(graph, owner, [*history, AIMessage("Confirma?"), HumanMessage("sim")])
    assert done.reply == "Feito: número bloqueado. As mensagens dele serão guardadas, sem resposta."
    session.expire_all()
    created = session.exec(select(Contact).where(Contact.phone == "5521966665555")).one()
    assert (created.organization_id, created.status) == (petfeliz.id, "blocked")
    (audit,) = session.exec(select(AuditLog)).all()
    assert (audit.actor_kind, audit.actor_id, audit.action, audit.before) == (
        "owner",
        owner.owner_number_id,
        "block_contact",
        None,
    )
    assert audit.created_at == NOW


async def test_block_contact_refuses_an_owner_number_and_proposes_nothing(
    deps: ToolDeps, owner: AuroraContext, session: Session
) -> None:
    # The example's owner, spelled without the ninth digit; the owner fixture's own contact too.
    for client in ("11 8888-7777", f"#{owner.contact_id}"):
        words = await refused(deps, owner, "block_contact", client=client)
        assert "é um número do dono: não pode ser bloqueado." in words, words
    assert session.exec(select(AuroraPendingAction)).all() == []
    assert session.exec(select(Contact).where(col(Contact.status) == "blocked")).all() == []


async def test_block_contact_never_reaches_another_shops_contact(
    deps: ToolDeps, owner: AuroraContext, session: Session
) -> None:
    other = second_shop(session)
    theirs = Contact(organization_id=other.id or 0, phone="5511955554444", name="Joana")
    session.add(theirs)
    session.commit()
    words = await refused(deps, owner, "block_contact", client=f"#{theirs.id}")
    assert "Nenhum cliente encontrado" in words
    # By phone it is a number this shop never saw: confirming blocks it here, not there.
    model = ScriptedChatModel(
        script=[
            AIMessage("", tool_calls=[call("block_contact", client="5511955554444")]),
            AIMessage("Confirma?"),
        ]
    )
    graph = build_graph(model, deps)
    history = [HumanMessage("Bloqueia")]
    await run_turn(graph, owner, history)
    await run_turn(graph, owner, [*history, AIMessage("Confirma?"), HumanMessage("sim")])
    session.expire_all()
    rows = session.exec(
        select(Contact.organization_id, Contact.status).where(Contact.phone == "5511955554444")
    )
    assert sorted(rows.all()) == sorted([(other.id, "active"), (owner.organization_id, "blocked")])


async def test_unblock_contact_refuses_a_contact_that_is_not_blocked(
    deps: ToolDeps,
    owner: AuroraContext,
    marina: Contact,
) -> None:
    words = await refused(deps, owner, "unblock_contact", client="Marina")
    assert (
        words.endswith("Marina (+5511977776666) não está bloqueado.")
        or "não está bloqueado" in words
    )
