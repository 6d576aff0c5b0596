"""`[[templates]]`: which approved Cloud API template carries each kind of proactive message.

Outside the 24-hour customer-service window the Cloud API refuses free text (131047) and
takes only a template Meta approved. The organization file names, per proactive kind, the
template, its language and the order of its body's parameters (`{{1}}`, `{{2}}`…) by the
names below; `proactive/wording.py` renders each name's value from the same data as the
free text, so a template says what the text would have said.
"""

from __future__ import annotations

from typing import Literal, get_args

TemplateKind = Literal[
    "appointment_reminder",
    "care_invitation",
    "daily_summary",
    "escalation_alert",
    "budget_alert",
    "template_alert",
]

#: Every proactive kind a Cloud organization needs a template for.
TEMPLATE_KINDS: tuple[TemplateKind, ...] = get_args(TemplateKind)

#: The parameter names each kind can fill, in the order the free text uses them.
TEMPLATE_PARAMETERS: dict[TemplateKind, tuple[str, ...]] = {
    "appointment_reminder": ("cliente", "pet", "servico", "horario", "data", "loja"),
    "care_invitation": ("cliente", "pet", "servico", "loja"),
    "daily_summary": (
        "data",
        "clientes",
        "faturamento",
        "ticket_medio",
        "faltas",
        "cancelamentos",
    ),
    "escalation_alert": ("cliente", "telefone", "motivo"),
    "budget_alert": ("gasto", "orcamento", "percentual"),
    "template_alert": ("modelo", "erro"),
}


def unknown_parameters(kind: TemplateKind, parameters: list[str]) -> list[str]:
    """The names in `parameters` that `kind` cannot fill."""
    known = TEMPLATE_PARAMETERS[kind]
    return [name for name in parameters if name not in known]
