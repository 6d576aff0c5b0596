"""What Aurora's own messages say (pt-BR), and when they must wait for quiet hours to end.

Each `*_text` has a `*_values` twin: the same data as a Cloud API template's parameters, by
the names `org/templates.py` lists for its kind, so a template says what the text says.
"""

from __future__ import annotations

from datetime import date, datetime, time

from zapvet.analytics.figures import Summary
from zapvet.cleaning import clean_text
from zapvet.money import format_brl
from zapvet.scheduling.booking import WEEKDAY_NAMES, describe_day

#: The last line of every care invitation (the client graph honours the answer "PARAR").
CARE_OPT_OUT = "Responda PARAR para não receber mais lembretes."


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


def reminder_values(
    org: str, client: str | None, pet: str | None, service: str, local: datetime
) -> dict[str, str]:
    return _one_line(
        {
            "cliente": client or "cliente",
            "pet": pet or "seu pet",
            "servico": service,
            "horario": f"{local:%H:%M}",
            "data": describe_day(local.date()),
            "loja": org,
        }
    )


def care_text(
    org: str,
    client: str | None,
    pet: str,
    service: str,
    last_visit: date,
    slots: list[datetime],
) -> str:
    """A care invitation: the pet is due for `service` again; `slots` are local free starts."""
    hello = f"Olá, {client}! " if client else "Olá! "
    offered = "\n".join(
        f"• {WEEKDAY_NAMES[moment.weekday()]}, {moment:%d/%m} às {moment:%H:%M}" for moment in slots
    )
    return (
        f"{hello}🐾 Está na hora do próximo {service} de {pet} na {org} "
        f"(o último foi em {last_visit:%d/%m/%Y}).\n"
        f"Tenho estes horários livres:\n{offered}\n"
        "Quer reservar um deles? É só responder com o dia e o horário.\n"
        f"{CARE_OPT_OUT}"
    )


def care_values(org: str, client: str | None, pet: str | None, service: str) -> dict[str, str]:
    """A care invitation's template parameters (`care_invitation` in `org.templates`)."""
    return _one_line(
        {"cliente": client or "cliente", "pet": pet or "seu pet", "servico": service, "loja": org}
    )


def alert_text(client: str | None, phone: str | None, reason: str | None) -> str:
    who = client or phone or "um cliente"
    contact = f" ({phone})" if client and phone else ""
    return (
        f"⚠️ Atendimento humano pedido: {who}{contact}.\n"
        f"Motivo: {reason or 'não informado'}.\n"
        "O robô parou de responder nessa conversa. Quando terminar, peça para eu devolvê-la."
    )


def alert_values(client: str | None, phone: str | None, reason: str | None) -> dict[str, str]:
    return _one_line(
        {
            "cliente": client or phone or "um cliente",
            "telefone": phone or "sem telefone",
            "motivo": reason or "não informado",
        }
    )


#: What customers' conversations get at 100 % of the budget, as the owner reads it.
OVER_BUDGET_WORDS = {
    "hand_to_human": (
        "as conversas com clientes passam para uma pessoa da equipe (o cliente é avisado)"
    ),
    "fallback_only": (
        "os clientes recebem uma resposta fixa, sem IA, pedindo que aguardem a equipe"
    ),
}


def budget_text(level: int, spent_cents: int, budget_cents: int, behaviour: str) -> str:
    """The owner's alert at 80 % (`level` < 100) or 100 % of the month's AI budget."""
    figures = f"{format_brl(spent_cents)} de {format_brl(budget_cents)}"
    then = OVER_BUDGET_WORDS.get(behaviour, OVER_BUDGET_WORDS["hand_to_human"])
    if level < 100:
        share = spent_cents * 100 // budget_cents if budget_cents else 100
        return (
            f"💰 Orçamento de IA do mês: {figures} já usados ({share}%).\n"
            f"Ao chegar em 100%, {then}. Para evitar isso, aumente o orçamento mensal."
        )
    return (
        f"🛑 Orçamento de IA do mês atingido: {figures}.\n"
        f"A partir de agora, {then}. Nenhuma mensagem se perde: todas ficam registradas.\n"
        "Ao aumentar o orçamento, o atendimento automático volta na hora. "
        "Você continua podendo falar comigo normalmente."
    )


def budget_values(spent_cents: int, budget_cents: int) -> dict[str, str]:
    share = spent_cents * 100 // budget_cents if budget_cents else 100
    return {
        "gasto": format_brl(spent_cents),
        "orcamento": format_brl(budget_cents),
        "percentual": f"{share}%",
    }


def template_alert_text(kind: str, name: str, error: str) -> str:
    """The owners' notice that Meta refused a template (fix it in the WhatsApp Manager)."""
    return (
        f"⚠️ O WhatsApp recusou o modelo de mensagem {name!r} ({kind}): {error}.\n"
        "Fora da janela de 24 horas essas mensagens não estão sendo enviadas. "
        "Confira o modelo no Gerenciador do WhatsApp e no arquivo da organização."
    )


def template_alert_values(name: str, error: str) -> dict[str, str]:
    return _one_line({"modelo": name, "erro": error})


#: Why an instance is down, as the owner reads it (Baileys' DisconnectReason codes).
_DISCONNECT_WORDS = {
    401: "a sessão foi encerrada no celular (desconectado em Aparelhos conectados)",
    403: "o WhatsApp recusou a conexão deste número",
    440: "o número foi conectado em outro lugar",
}


def disconnected_text(instance: str, state: str, reason: int | None, local: datetime) -> str:
    """The owners' alert that the WhatsApp instance `instance` went down at `local`."""
    why = _DISCONNECT_WORDS.get(reason or 0)
    if state == "refused":
        why = "o QR code expirou sem ser escaneado"
    cause = f" Motivo: {why}." if why else ""
    return (
        f"🔌 O WhatsApp do atendimento ({instance}) desconectou às {local:%H:%M} de "
        f"{local:%d/%m}.{cause}\n"
        "Enquanto ele estiver desconectado, os clientes não recebem respostas. Para voltar, "
        "gere um novo QR code no Evolution API e escaneie em WhatsApp › Aparelhos conectados. "
        "Depois disso eu volto a responder; mensagens de mais de 6 horas ficam para a equipe."
    )


def reconnected_text(instance: str, local: datetime) -> str:
    """The owners' notice that the WhatsApp instance `instance` is connected again."""
    return (
        f"✅ O WhatsApp do atendimento ({instance}) voltou a conectar às {local:%H:%M} de "
        f"{local:%d/%m}. Já estou respondendo os clientes de novo."
    )


def webhook_gone_text(endpoint_id: int, host: str, slug: str) -> str:
    """The owners' notice that a webhook receiver answered 410 Gone and was disabled."""
    return (
        f"🔗 O sistema que recebia os avisos automáticos em {host} respondeu que o endereço "
        "não existe mais (410), então parei de enviar para ele. Os avisos desde então ficam "
        "guardados. Se o endereço mudou, atualize o arquivo da loja; se ele voltou, rode "
        f"`zapvet webhooks enable --org {slug} {endpoint_id}` e eu reenvio o que ficou pendente."
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


def summary_values(summary: Summary, day: date) -> dict[str, str]:
    return {
        "data": describe_day(day),
        "clientes": str(summary.clients_served),
        "faturamento": format_brl(summary.revenue_cents),
        "ticket_medio": format_brl(summary.average_ticket_cents),
        "faltas": str(summary.no_shows),
        "cancelamentos": str(summary.cancellations),
    }


def _one_line(values: dict[str, str]) -> dict[str, str]:
    # Meta refuses template parameters with line breaks, tabs or runs of spaces.
    return {name: " ".join(clean_text(value, limit=300).split()) for name, value in values.items()}
