"""A blocked contact through the whole pipeline: stored, never answered, never shown to the
model, and answered again from the first message after the unblock."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from tests.pipeline.conftest import rows
from tests.pipeline.support import zapvet
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.testing.stack import LocalStack

pytestmark = pytest.mark.slow  # the whole pipeline: bridge over HTTP, worker on Redis, fake gateway

ANA = "5511977776666"


def contact(stack: LocalStack, *args: str) -> str:
    result = zapvet(
        "contact",
        *args,
        database_url=stack.database_url,
        redis_url=stack.redis_url,
        namespace=stack.namespace,
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_blocked_contact_is_never_answered_and_unblocking_resumes(
    stack: LocalStack, engine: Engine, model: ScriptedChatModel
) -> None:
    contact(stack, "block", "+55 11 97777-6666", "--org", "petfeliz")
    assert stack.say(ANA, "Oi, alguém aí?").json()["stored"] == 1
    assert stack.say(ANA, "Quero um banho pro Rex").json()["stored"] == 1

    contact(stack, "unblock", "11 97777-6666", "--org", "petfeliz")
    stack.say(ANA, "Voltei")
    stack.wait(lambda: len(stack.gateway.sent) >= 1, what="the reply after the unblock")

    assert [s.text for s in stack.gateway.sent] == ["Recebi: Voltei"]
    (call,) = model.calls
    seen = " ".join(str(m.content) for m in call["messages"])
    assert "Voltei" in seen
    assert "alguém aí" not in seen and "banho pro Rex" not in seen  # never reached the model
    assert rows(
        engine,
        "SELECT content, status, meta->>'blocked' FROM messages"
        " WHERE direction = 'incoming' ORDER BY id",
    ) == [
        ("Oi, alguém aí?", "ignored", "true"),
        ("Quero um banho pro Rex", "ignored", "true"),
        ("Voltei", "processed", None),
    ]
