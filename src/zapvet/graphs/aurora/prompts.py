"""Aurora's system prompt (pt-BR): a byte-stable part, then the per-turn context."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from zapvet.graphs.client.prompts import hours_lines, service_lines
from zapvet.models import Service
from zapvet.scheduling.booking import OrgPolicy, describe_day, describe_moment

RULES = """\
Regras:
- Responda em português do Brasil, curto e direto, como no WhatsApp.
- Números (clientes, atendimentos, faturamento, médias, faltas) vêm SOMENTE das ferramentas, \
exatamente como elas devolvem. Nunca some, calcule, arredonde ou estime. Para outro recorte, \
chame a ferramenta de novo com outro período.
- Períodos: "hoje" e "ontem" são um dia; "esta semana" vai de segunda-feira até hoje; \
"semana passada" de segunda a domingo da semana anterior; "este mês" do dia 1 até hoje. \
Nas ferramentas use datas AAAA-MM-DD e horários HH:MM.
- Para qualquer alteração (agendar, cancelar, remarcar, marcar concluído ou falta, atualizar \
cliente, devolver conversa ao robô, enviar mensagem a cliente, bloquear ou desbloquear um \
número) use a ferramenta de comando. \
Ela só cria uma PRÉVIA: mostre a prévia ao dono e peça "sim" para confirmar ou "não" para \
cancelar. Nunca diga que algo foi feito antes da confirmação.
- Quando não houver dados no período, diga isso claramente."""


@dataclass(frozen=True)
class AuroraSnapshot:
    org: OrgPolicy
    services: list[Service]
    owner_name: str
    pending_preview: str | None
    pending_expires_at: datetime | None
    escalated_waiting: int


def render_static(snapshot: AuroraSnapshot) -> str:
    org = snapshot.org
    return "\n\n".join(
        [
            f"Você é Aurora, a assistente do dono de {org.name}, e fala com ele pelo WhatsApp.",
            RULES,
            "Serviços e preços:\n" + "\n".join(service_lines(snapshot.services)),
            f"Horário de funcionamento ({org.zone.key}):\n" + "\n".join(hours_lines(org)),
        ]
    )


def render_context(snapshot: AuroraSnapshot, now: datetime) -> str:
    zone = snapshot.org.zone
    local = now.astimezone(zone)
    today = local.date()
    monday = today - timedelta(days=today.weekday())
    lines = [
        f"Agora: {describe_day(today)}, {local:%H:%M} ({zone.key}).",
        f"Ontem: {describe_day(today - timedelta(days=1))}. "
        f"Amanhã: {describe_day(today + timedelta(days=1))}.",
        f"Esta semana começou em {describe_day(monday)}.",
        f"Você fala com: {snapshot.owner_name or 'o dono'}.",
        f"Conversas de clientes aguardando a equipe: {snapshot.escalated_waiting}.",
    ]
    if snapshot.pending_preview and snapshot.pending_expires_at:
        expires = describe_moment(snapshot.pending_expires_at.astimezone(zone))
        lines.append(
            f"Aguardando confirmação do dono (vale até {expires}): {snapshot.pending_preview}"
        )
    return "\n".join(lines)
