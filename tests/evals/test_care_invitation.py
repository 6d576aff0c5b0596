"""A care invitation answered in the normal conversation: the agent is given the invitation,
worded and with slots as the scheduler sends it, before the customer's answer."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from tests.conftest import REPO
from zapvet.evals.runner import run_scenario
from zapvet.evals.scenario import load_scenario
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.proactive.wording import CARE_OPT_OUT

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # plays a conversation scenario
BOOKED = REPO / "scenarios" / "client" / "26-care-invitation-booked.yaml"


async def test_the_agent_answering_a_care_invitation_has_it_in_its_history(
    database_url: str,
) -> None:
    scenario = load_scenario(BOOKED)
    model = ScriptedChatModel()  # the runner hands it the scenario's scripted outputs
    run = await run_scenario(scenario, database_url, model_factory=lambda: model)
    assert run.passed, run.failures
    history = [m for m in model.calls[0]["messages"] if isinstance(m, AIMessage | HumanMessage)]
    invitation, answer = history[-2:]
    assert isinstance(invitation, AIMessage) and isinstance(answer, HumanMessage)
    assert answer.content == "sim, sábado às 9"
    text = str(invitation.content)
    assert "Banho de Rex" in text and "12/11/2026" in text and text.endswith(CARE_OPT_OUT)
    assert "• sábado, 05/12 às 09:00" in text  # the slot nearest Rex's usual 09:00
