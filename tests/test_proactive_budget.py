"""The monthly AI budget's pure parts: the local month, the level, the owners' words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.conftest import SAO_PAULO
from zapvet.proactive.budget import REACHED, WARNING, BudgetState, budget_key, month_of
from zapvet.proactive.wording import budget_text


def test_the_month_is_the_organizations_local_one() -> None:
    # 1 December 01:30 UTC is still 30 November 22:30 in São Paulo.
    month, start, end = month_of(datetime(2026, 12, 1, 1, 30, tzinfo=UTC), SAO_PAULO)
    assert month == "2026-11"
    assert start == datetime(2026, 11, 1, tzinfo=SAO_PAULO)
    assert end == datetime(2026, 12, 1, tzinfo=SAO_PAULO)
    month, _, end = month_of(datetime(2026, 12, 15, tzinfo=UTC), SAO_PAULO)
    assert (month, end) == ("2026-12", datetime(2027, 1, 1, tzinfo=SAO_PAULO))


@pytest.mark.parametrize(
    ("spent", "budget", "level"),
    [(0, 15000, 0), (11999, 15000, 0), (12000, 15000, WARNING), (14999, 15000, WARNING),
     (15000, 15000, REACHED), (20000, 15000, REACHED), (0, 0, REACHED)],
)  # fmt: skip
def test_the_level_is_80_from_four_fifths_and_100_from_the_budget(
    spent: int, budget: int, level: int
) -> None:
    assert BudgetState("2026-12", spent, budget, "hand_to_human").level == level


def test_each_level_and_budget_has_its_own_key_per_owner() -> None:
    warned = BudgetState("2026-12", 12000, 15000, "hand_to_human")
    reached = BudgetState("2026-12", 15000, 15000, "hand_to_human")
    raised = BudgetState("2026-12", 24000, 30000, "hand_to_human")
    keys = {budget_key(state, 7) for state in (warned, reached, raised)}
    assert len(keys) == 3
    assert budget_key(warned, 7) != budget_key(warned, 8)
    later = BudgetState("2026-12", 13000, 15000, "fallback_only")
    assert budget_key(warned, 7) == budget_key(later, 7)  # the spend is not part of it


def test_the_owner_reads_the_figures_in_reais_and_what_happens_next() -> None:
    warned = budget_text(WARNING, 12345, 15000, "hand_to_human")
    assert "R$ 123,45 de R$ 150,00" in warned and "(82%)" in warned
    assert "passam para uma pessoa" in warned
    reached = budget_text(REACHED, 150012, 150000, "fallback_only")
    assert "atingido: R$ 1.500,12 de R$ 1.500,00" in reached
    assert "resposta fixa" in reached and "Nenhuma mensagem se perde" in reached
