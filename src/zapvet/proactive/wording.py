"""What Aurora's own messages say (pt-BR), and when they must wait for quiet hours to end."""

from __future__ import annotations

from datetime import date, datetime, time

from zapvet.analytics.figures import Summary
from zapvet.money import format_brl
from zapvet.scheduling.booking import describe_day


def in_quiet_hours(moment: time, start: time | None, end: time | None) -> bool:
    """Whether local `moment` falls in [start, end), a window that may wrap midnight."""
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def reminder_text(
    org: str, client: str | None, pet: str | None, service: str, local: datetime
) -> str:
    hello = f"Olá, {client}! " if client else "Olá! "
    whom = f" do {pet}" if pet else ""
    return (
        f"{hello}🐾 Lembrete: {service}{whom} hoje às {local:%H:%M} na {org}. "
        "Se precisar remarcar ou cancelar, é só responder aqui. "
        'Para não receber mais lembretes, responda "parar".'
    )


def alert_text(client: str | None, phone: str | None, reason: str | None) -> str:
    who = client or phone or "um cliente"
    contact = f" ({phone})" if client and phone else ""
    return (
        f"⚠️ Atendimento humano pedido: {who}{contact}.\n"
        f"Motivo: {reason or 'não informado'}.\n"
        "O robô parou de responder nessa conversa. Quando terminar, peça para eu devolvê-la."
    )


def summary_text(summary: Summary, day: date) -> str:
    """The owner's end-of-day message, every figure straight from `summary`."""
    lines = [f"📊 Resumo de {describe_day(day)}:", f"Clientes atendidos: {summary.clients_served}"]
    lines += [f"- {item.name}: {item.count}" for item in summary.per_service]
    lines += [
        f"Faturamento: {format_brl(summary.revenue_cents)}",
        f"Média por cliente: {format_brl(summary.average_ticket_cents)}",
        f"Faltas: {summary.no_shows} · Cancelamentos: {summary.cancellations}",
        f"Clientes que pediram para não receber mensagens: {summary.opted_out_clients}",
    ]
    return "\n".join(lines)
