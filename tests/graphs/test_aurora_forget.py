"""Aurora's `forget_client`: a preview, then the owner's "sim" erases the client's personal
data (LGPD), audited without the erased data; a forgotten client cannot be forgotten again."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from sqlmodel import Session, select

from tests.graphs.test_aurora_blocking import marina, refused
from tests.graphs.test_aurora_commands import call
from zapvet.commands.privacy import pseudonym
from zapvet.graphs.aurora.graph import build_graph
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.models import AuditLog, AuroraPendingAction, Contact
from zapvet.tools.context import AuroraContext
from zapvet.tools.deps import ToolDeps

__all__ = ["marina"]  # the fixture
pytestmark = pytest.mark.anyio
ASK = "Confirma?"


async def test_forget_client_erases_after_yes_and_audits_without_the_data(
    deps: ToolDeps, owner: AuroraContext, marina: Contact, session: Session
) -> None:
    model = ScriptedChatModel(
        script=[AIMessage("", tool_calls=[call("forget_client", client="Marina")]), AIMessage(ASK)]
    )
    graph = build_graph(model, deps)
    history = [HumanMessage("Apaga os dados da Marina, ela pediu")]
    first = await run_turn(graph, owner, history)
    (preview,) = [str(m.content) for m in first.messages if m.type == "tool"]
    assert "apagar os dados pessoais de Marina (+5511977776666) (LGPD)" in preview
    session.expire_all()
    assert session.get(Contact, marina.id).name == "Marina"  # type: ignore[union-attr]

    second = await run_turn(graph, owner, [*history, AIMessage(ASK), HumanMessage("sim")])
    assert second.reply is not None and second.reply.startswith("Feito: os dados pessoais")
    assert len(model.calls) == 2  # the "sim" was answered without the model
    session.expire_all()
    forgotten = session.get(Contact, marina.id)
    assert forgotten is not None and forgotten.phone is None
    assert forgotten.name == pseudonym(marina.organization_id, marina.id or 0)
    assert session.exec(select(AuroraPendingAction)).one().status == "confirmed"
    (audit,) = session.exec(select(AuditLog)).all()
    assert (audit.action, audit.entity, audit.entity_id) == (
        "forget_contact",
        "contacts",
        marina.id,
    )
    assert (audit.actor_kind, audit.actor_id) == ("owner", owner.owner_number_id)
    assert audit.before is None
    assert "Marina" not in json.dumps(audit.after) and "977776666" not in json.dumps(audit.after)

    words = await refused(deps, owner, "forget_client", client=f"#{marina.id}")
    assert words.endswith("Os dados desse cliente já foram apagados.")
