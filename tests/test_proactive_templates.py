"""Template parameters: each kind's values, by the names its `[[templates]]` entry may use."""

from __future__ import annotations

from datetime import date, datetime

from tests.conftest import SAO_PAULO
from zapvet.analytics.figures import Summary
from zapvet.org.templates import TEMPLATE_PARAMETERS
from zapvet.proactive.wording import (
    alert_values,
    budget_values,
    reminder_values,
    summary_values,
    template_alert_values,
)

DAY = date(2026, 11, 26)
SUMMARY = Summary(
    start=DAY,
    end=DAY,
    clients_served=7,
    completed=6,
    revenue_cents=84_000,
    average_ticket_cents=14_000,
    no_shows=1,
    cancellations=2,
    still_scheduled=0,
    opted_out_clients=0,
    per_service=[],
)


def test_each_kind_renders_exactly_the_parameters_its_template_may_name() -> None:
    local = datetime(2026, 11, 26, 19, 45, tzinfo=SAO_PAULO)
    rendered = {
        "appointment_reminder": reminder_values("Pet Feliz", "Marina", "Thor", "Banho", local),
        "escalation_alert": alert_values("Marina", "5511977776666", "quer falar com alguém"),
        "daily_summary": summary_values(SUMMARY, DAY),
        "budget_alert": budget_values(8_000, 10_000),
        "template_alert": template_alert_values("lembrete_horario", "code 132000"),
    }
    assert {kind: tuple(values) for kind, values in rendered.items()} == {
        kind: TEMPLATE_PARAMETERS[kind] for kind in rendered
    }
    assert rendered["appointment_reminder"] == {
        "cliente": "Marina",
        "pet": "Thor",
        "servico": "Banho",
        "horario": "19:45",
        "data": "quinta-feira, 26/11/2026",
        "loja": "Pet Feliz",
    }
    assert rendered["daily_summary"]["faturamento"] == "R$ 840,00"
    assert rendered["budget_alert"] == {
        "gasto": "R$ 80,00",
        "orcamento": "R$ 100,00",
        "percentual": "80%",
    }


def test_template_values_are_never_empty_and_fit_on_one_line() -> None:
    local = datetime(2026, 11, 26, 19, 45, tzinfo=SAO_PAULO)
    reminder = reminder_values("Pet Feliz", None, None, "Banho", local)
    assert (reminder["cliente"], reminder["pet"]) == ("cliente", "seu pet")
    alert = alert_values(None, None, "Quer falar\ncom a dona.\t  Urgente!     mesmo")
    assert alert == {
        "cliente": "um cliente",
        "telefone": "sem telefone",
        "motivo": "Quer falar com a dona. Urgente! mesmo",
    }
