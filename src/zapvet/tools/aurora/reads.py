"""Aurora's read tools: the owner's figures, agenda, free slots and clients, computed by SQL."""

from __future__ import annotations

from datetime import date as Day

from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolRuntime
from sqlmodel import col, select

from zapvet.analytics import care, costs, figures
from zapvet.commands.proposals import for_owner
from zapvet.errors import ToolError
from zapvet.models import Appointment, Contact, Pet
from zapvet.money import format_brl, format_percent
from zapvet.scheduling import booking
from zapvet.scheduling.availability import group_by_period
from zapvet.tools.aurora.access import caller, loosely_matches, resolve_client
from zapvet.tools.client import result
from zapvet.tools.context import AuroraContext
from zapvet.tools.deps import ToolDeps
from zapvet.tools.schemas import tool


def day_of(org: booking.OrgPolicy, text: str) -> Day:
    """The organization's local date that the owner's "AAAA-MM-DD" names."""
    return booking.parse_local(org, text).date()


def make_read_tools(deps: ToolDeps) -> list[BaseTool]:
    """Aurora's read tools, bound to this process's database and clock."""
    call = caller(deps)

    @tool
    async def business_summary(
        start_date: str, end_date: str, runtime: ToolRuntime[AuroraContext]
    ) -> str:
        """Resumo do período (datas AAAA-MM-DD, inclusivas): clientes atendidos, atendimentos
        por serviço, faturamento dos concluídos, média por cliente, faltas e cancelamentos.

        Exemplo (hoje): business_summary(start_date="2026-11-25", end_date="2026-11-25")
        """
        async with call(runtime) as c:
            start, end = day_of(c.org, start_date), day_of(c.org, end_date)
            if end < start:
                raise ToolError("A data final vem antes da inicial.")
            s = await figures.business_summary(
                c.session, c.owner.organization_id, c.org.zone, start, end
            )
        return result(
            period=f"{start:%d/%m/%Y}" + ("" if start == end else f" a {end:%d/%m/%Y}"),
            clients_served=s.clients_served,
            completed_appointments=s.completed,
            by_service={item.name: item.count for item in s.per_service},
            by_category=s.per_category(),
            revenue=format_brl(s.revenue_cents),
            average_per_client=format_brl(s.average_ticket_cents),
            no_shows=s.no_shows,
            cancellations=s.cancellations,
            still_scheduled=s.still_scheduled,
            clients_opted_out_of_messages=s.opted_out_clients,
        )

    def budget_of(report: costs.CostReport) -> dict[str, str]:
        if report.monthly_budget_cents is None:
            return {}
        shown = {"monthly_budget": format_brl(report.monthly_budget_cents)}
        if report.budget_share is not None:
            shown["budget_used"] = format_percent(report.budget_share)
        return shown

    @tool
    async def ai_costs(start_date: str, end_date: str, runtime: ToolRuntime[AuroraContext]) -> str:
        """Quanto a IA custou no período (datas AAAA-MM-DD, inclusivas), em R$: total, por
        agente (client = atendente dos clientes, aurora = você), por dia, e os tokens, a
        parcela do prompt que veio do cache, minutos de áudio transcritos e imagens.
        Modelos em "unpriced_models" não têm preço na tabela e entraram como R$ 0,00: avise o
        dono. Para "este mês", do dia 1 até hoje: "monthly_budget" é o orçamento mensal de IA
        e "budget_used" quanto dele o mês já gastou (ausentes sem orçamento).

        Exemplo: ai_costs(start_date="2026-11-01", end_date="2026-11-25")
        """
        async with call(runtime) as c:
            start, end = day_of(c.org, start_date), day_of(c.org, end_date)
            if end < start:
                raise ToolError("A data final vem antes da inicial.")
            report = await costs.ai_costs(
                c.session,
                c.owner.organization_id,
                c.org.zone,
                start,
                end,
                transcribe_model=deps.transcribe_model,
            )

        def shown(f: costs.CostFigures) -> dict[str, object]:
            return {
                "turns": f.turns,
                "cost": format_brl(f.cost_cents),
                "input_tokens": f.input_tokens,
                "cached_input_tokens": f.cached_input_tokens,
                "cache_hit_share": format_percent(f.cache_hit_share),
                "output_tokens": f.output_tokens,
                "audio_minutes": str(f.audio_minutes).replace(".", ","),
                "images": f.images,
            }

        return result(
            period=f"{start:%d/%m/%Y}" + ("" if start == end else f" a {end:%d/%m/%Y}"),
            total=shown(report.total),
            by_agent={name: shown(f) for name, f in sorted(report.per_agent.items())},
            by_day={f"{day:%d/%m}": format_brl(f.cost_cents) for day, f in report.per_day.items()},
            usd_brl=str(report.usd_brl).replace(".", ","),
            unpriced_models=sorted(report.unpriced_models),
            **budget_of(report),
        )

    @tool
    async def care_report(
        start_date: str, end_date: str, runtime: ToolRuntime[AuroraContext], within_days: int = 14
    ) -> str:
        """Resultado dos lembretes de retorno (convites de cuidado: banho, vacina, vermífugo
        vencendo) enviados no período (datas AAAA-MM-DD, inclusivas): convites enviados,
        agendamentos do mesmo pet e serviço feitos até `within_days` dias depois de cada
        convite (um por convite; sem cancelados nem faltas), clientes que voltaram, quantos já
        foram concluídos, o faturamento desses agendamentos (valor combinado) e a parte já
        concluída, no total e por serviço. "Quantos clientes voltaram pelos lembretes este
        mês?": do dia 1 até hoje.

        Exemplo: care_report(start_date="2026-12-01", end_date="2026-12-06", within_days=14)
        """
        if not 1 <= within_days <= 365:
            raise ToolError("Informe de 1 a 365 dias.")
        async with call(runtime) as c:
            start, end = day_of(c.org, start_date), day_of(c.org, end_date)
            if end < start:
                raise ToolError("A data final vem antes da inicial.")
            report = await care.care_results(
                c.session, c.owner.organization_id, c.org.zone, start, end, within_days
            )

        def shown(f: care.CareFigures) -> dict[str, object]:
            return {
                "invitations_sent": f.invitations_sent,
                "bookings": f.bookings,
                "clients_returned": f.clients_returned,
                "completed": f.completed,
                "revenue": format_brl(f.revenue_cents),
                "completed_revenue": format_brl(f.completed_revenue_cents),
            }

        return result(
            period=f"{start:%d/%m/%Y}" + ("" if start == end else f" a {end:%d/%m/%Y}"),
            within_days=within_days,
            total=shown(report.total),
            by_service={name: shown(f) for name, f in report.per_service.items()},
        )

    @tool
    async def list_appointments(date: str, runtime: ToolRuntime[AuroraContext]) -> str:
        """Agenda de um dia (AAAA-MM-DD): horário, cliente, pet, serviço, profissional, status,
        valor e número de cada agendamento. Exemplo: list_appointments(date="2026-11-26")
        """
        async with call(runtime) as c:
            day = day_of(c.org, date)
            items = await figures.day_appointments(
                c.session, c.owner.organization_id, c.org.zone, day
            )
        return result(
            day=booking.describe_day(day),
            appointments=[
                {
                    "appointment_id": a.id,
                    "time": f"{a.starts_at.astimezone(c.org.zone):%H:%M}",
                    "client": a.client,
                    "pet": a.pet,
                    "service": a.service,
                    "with": a.resource,
                    "status": a.status,
                    "price": format_brl(a.price_cents),
                }
                for a in items
            ],
        )

    @tool
    async def free_slots(
        date: str, runtime: ToolRuntime[AuroraContext], service_type: str | None = None
    ) -> str:
        """Horários livres de um dia (AAAA-MM-DD) por serviço, para o dono.

        Exemplo: free_slots(date="2026-11-26", service_type="banho")
        """
        async with call(runtime) as c:
            day = day_of(c.org, date)
            org = for_owner(c.org)
            services = (
                [await booking.resolve_service(c.session, c.owner.organization_id, service_type)]
                if service_type
                else await booking.active_services(c.session, c.owner.organization_id)
            )
            slots = {
                s.name: group_by_period(
                    await booking.day_slots(c.session, org, s, day, deps.clock()), org.zone
                )
                for s in services
            }
        return result(day=booking.describe_day(day), free=slots)

    @tool
    async def top_services(
        start_date: str, end_date: str, runtime: ToolRuntime[AuroraContext]
    ) -> str:
        """Serviços mais realizados no período (concluídos), com quantidade e faturamento.

        Exemplo: top_services(start_date="2026-11-01", end_date="2026-11-30")
        """
        async with call(runtime) as c:
            ranked = await figures.top_services(
                c.session,
                c.owner.organization_id,
                c.org.zone,
                day_of(c.org, start_date),
                day_of(c.org, end_date),
            )
        return result(
            top=[
                {"service": s.name, "count": s.count, "revenue": format_brl(s.revenue_cents)}
                for s in ranked
            ]
        )

    @tool
    async def new_clients(
        start_date: str, end_date: str, runtime: ToolRuntime[AuroraContext]
    ) -> str:
        """Clientes que escreveram pela primeira vez no período, com seus pets.

        Exemplo: new_clients(start_date="2026-11-01", end_date="2026-11-25")
        """
        async with call(runtime) as c:
            rows = await figures.new_clients(
                c.session,
                c.owner.organization_id,
                c.org.zone,
                day_of(c.org, start_date),
                day_of(c.org, end_date),
            )
        return result(
            count=len(rows),
            clients=[
                {"client_id": r.id, "name": r.name, "phone": r.phone, "pets": r.pets} for r in rows
            ],
        )

    @tool
    async def inactive_clients(runtime: ToolRuntime[AuroraContext], days: int = 60) -> str:
        """Clientes sem atendimento concluído há mais de `days` dias e sem nada agendado, com
        seus pets e a data da última visita. Exemplo: inactive_clients(days=60)
        """
        if days < 1:
            raise ToolError("Informe um número de dias maior que zero.")
        async with call(runtime) as c:
            rows = await figures.inactive_clients(
                c.session, c.owner.organization_id, deps.clock(), days
            )
            zone = c.org.zone
        return result(
            days=days,
            count=len(rows),
            clients=[
                {
                    "client_id": r.id,
                    "name": r.name,
                    "phone": r.phone,
                    "pets": r.pets,
                    "last_visit": f"{r.last_visit.astimezone(zone):%d/%m/%Y}"
                    if r.last_visit
                    else None,
                }
                for r in rows
            ],
        )

    @tool
    async def find_client(query: str, runtime: ToolRuntime[AuroraContext]) -> str:
        """Procura clientes por nome, telefone ou número (#12), com pets e próximos agendamentos.

        Exemplo: find_client(query="Marina")
        """
        async with call(runtime) as c:
            org_id = c.owner.organization_id
            try:
                contacts = [await resolve_client(c.session, org_id, query)]
            except ToolError:
                everyone = await c.session.exec(
                    select(Contact).where(Contact.organization_id == org_id)
                )
                contacts = [x for x in everyone if loosely_matches(x, query)][:10]
            ids = [contact.id for contact in contacts]
            pets: dict[int | None, list[str]] = {}
            for owner_id, name in await c.session.exec(
                select(Pet.contact_id, Pet.name)
                .where(Pet.organization_id == org_id, col(Pet.contact_id).in_(ids))
                .order_by(col(Pet.id))
            ):
                pets.setdefault(owner_id, []).append(name)
            upcoming: dict[int | None, list[Appointment]] = {}
            for a in await c.session.exec(
                select(Appointment)
                .where(
                    Appointment.organization_id == org_id,
                    col(Appointment.contact_id).in_(ids),
                    col(Appointment.status).in_(("scheduled", "confirmed")),
                    col(Appointment.starts_at) >= deps.clock(),
                )
                .order_by(col(Appointment.starts_at))
            ):
                upcoming.setdefault(a.contact_id, []).append(a)
            found = [
                {
                    "client_id": contact.id,
                    "name": contact.name,
                    "phone": contact.phone,
                    "pets": pets.get(contact.id, []),
                    "upcoming": [
                        {
                            "appointment_id": a.id,
                            "when": booking.describe_moment(a.starts_at.astimezone(c.org.zone)),
                        }
                        for a in upcoming.get(contact.id, [])
                    ],
                }
                for contact in contacts
            ]
        return result(clients=found)

    return [
        business_summary,
        ai_costs,
        care_report,
        list_appointments,
        free_slots,
        top_services,
        new_clients,
        inactive_clients,
        find_client,
    ]
