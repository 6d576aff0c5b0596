"""The client attendant's tools (DESIGN §7 names and arguments).

Organization, contact and conversation come from the graph's runtime context, never from
arguments: a tool without that context refuses. Every query is filtered by organization
and contact, so a customer sees and changes only their own pets and appointments. Each
tool runs in its own transaction; a refusal is a `ToolError` whose pt-BR message goes
back to the model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.errors import ToolError
from zapvet.models import UPCOMING_STATUSES, Appointment, Conversation, Pet, Resource, Service
from zapvet.money import format_brl
from zapvet.proactive.escalation import escalate
from zapvet.scheduling import booking
from zapvet.scheduling.availability import group_by_period, is_open_day
from zapvet.tools.context import ClientContext
from zapvet.tools.deps import ToolDeps
from zapvet.tools.schemas import tool
from zapvet.webhooks.events import emit

_SPECIES = {
    "cachorro": "cachorro",
    "cão": "cachorro",
    "cao": "cachorro",
    "cadela": "cachorro",
    "cachorra": "cachorro",
    "dog": "cachorro",
    "gato": "gato",
    "gata": "gato",
    "cat": "gato",
}


def result(**fields: Any) -> str:
    """A tool result: compact JSON the model reads (and the grounding check searches)."""
    return json.dumps(fields, ensure_ascii=False, default=str)


def trusted(runtime: ToolRuntime[ClientContext]) -> ClientContext:
    """The caller-set identity, or a refusal when the graph ran without one."""
    context = runtime.context
    if isinstance(context, dict):
        context = ClientContext(**context)
    if not isinstance(context, ClientContext) or not context.complete:
        raise ToolError("Não consigo identificar este atendimento; nenhuma ação foi feita.")
    return context


def make_client_tools(deps: ToolDeps) -> list[BaseTool]:
    """The eight client tools, bound to this process's database and clock."""

    @asynccontextmanager
    async def transaction() -> AsyncIterator[AsyncSession]:
        async with deps.sessions() as session, session.begin():
            yield session

    def describe(appointment: Appointment, org: booking.OrgPolicy, **extra: Any) -> dict[str, Any]:
        local = appointment.starts_at.astimezone(org.zone)
        return {
            "appointment_id": appointment.id,
            "date": f"{local:%Y-%m-%d}",
            "day": booking.describe_day(local.date()),
            "time": f"{local:%H:%M}",
            "status": appointment.status,
            "price": format_brl(appointment.price_cents),
            **extra,
        }

    async def own_appointment(
        session: AsyncSession, ctx: ClientContext, appointment_id: int
    ) -> Appointment:
        found = (
            await session.exec(
                select(Appointment)
                .where(
                    Appointment.organization_id == ctx.organization_id,
                    Appointment.contact_id == ctx.contact_id,
                    Appointment.id == appointment_id,
                )
                .with_for_update()
            )
        ).first()
        if found is None:
            raise ToolError(
                f"Não encontrei o agendamento #{appointment_id} entre os agendamentos deste "
                "cliente. Use list_my_appointments."
            )
        if found.status not in UPCOMING_STATUSES or found.starts_at < deps.clock():
            raise ToolError(f"O agendamento #{appointment_id} não está mais ativo.")
        return found

    def not_past(org: booking.OrgPolicy, start: datetime, now: datetime) -> None:
        # Also bounds the search for alternatives, which walks day by day from `start`.
        day = start.astimezone(org.zone).date()
        if day < now.astimezone(org.zone).date():
            raise ToolError(f"A data {day:%d/%m/%Y} já passou.")

    async def names(session: AsyncSession, appointment: Appointment) -> dict[str, str | None]:
        service = await session.get(Service, appointment.service_id)
        resource = await session.get(Resource, appointment.resource_id)
        pet = await session.get(Pet, appointment.pet_id) if appointment.pet_id else None
        return {
            "service": service.name if service else None,
            "pet": pet.name if pet else None,
            "with": resource.name if resource else None,
        }

    @tool
    async def register_pet(
        name: str,
        species: str,
        runtime: ToolRuntime[ClientContext],
        breed: str | None = None,
        age_years: int | None = None,
    ) -> str:
        """Cadastra um pet do cliente (ou completa o cadastro de um pet com o mesmo nome).

        Use antes de agendar um pet que ainda não aparece em "Pets cadastrados".
        Exemplo: register_pet(name="Rex", species="cachorro", breed="Golden Retriever", age_years=3)
        """
        ctx = trusted(runtime)
        name = name.strip()
        if not name:
            raise ToolError("Informe o nome do pet.")
        if age_years is not None and not 0 <= age_years <= 40:
            raise ToolError("Idade inválida: informe a idade em anos (0 a 40).")
        kind = _SPECIES.get(species.strip().casefold(), species.strip().casefold())
        async with transaction() as session:
            pet = await booking.find_pet(session, ctx.organization_id, ctx.contact_id, name)
            created = pet is None
            if pet is None:
                pet = Pet(
                    organization_id=ctx.organization_id,
                    contact_id=ctx.contact_id,
                    name=name,
                    species=kind,
                )
                session.add(pet)
            pet.breed = breed.strip() if breed else pet.breed
            pet.age_years = age_years if age_years is not None else pet.age_years
            await session.flush()
            if created:
                await emit(
                    await session.connection(),
                    "pet.created",
                    organization_id=ctx.organization_id,
                    about=pet.id or 0,
                    now=deps.clock(),
                )
            return result(
                status="cadastrado" if created else "já cadastrado (dados atualizados)",
                pet_id=pet.id,
                name=pet.name,
                species=pet.species,
                breed=pet.breed,
                age_years=pet.age_years,
            )

    @tool
    async def list_services(runtime: ToolRuntime[ClientContext]) -> str:
        """Lista os serviços oferecidos, com duração e preço. Exemplo: list_services()"""
        ctx = trusted(runtime)
        async with transaction() as session:
            services = await booking.active_services(session, ctx.organization_id)
        return result(
            services=[
                {
                    "name": s.name,
                    "category": s.category,
                    "duration_minutes": s.duration_minutes,
                    "price": format_brl(s.price_cents),
                }
                for s in services
            ]
        )

    @tool
    async def check_availability(
        date: str, runtime: ToolRuntime[ClientContext], service_type: str | None = None
    ) -> str:
        """Mostra os horários livres de um dia (AAAA-MM-DD), por manhã e tarde.

        Informe service_type (nome ou categoria do serviço) sempre que souber: a duração do
        serviço muda os horários. Exemplo: check_availability(date="2026-11-26",
        service_type="consulta")
        """
        ctx = trusted(runtime)
        now = deps.clock()
        async with transaction() as session:
            org = await booking.load_policy(session, ctx.organization_id)
            day = booking.parse_local(org, date).date()
            if day < now.astimezone(org.zone).date():
                raise ToolError(f"A data {day:%d/%m/%Y} já passou.")
            if service_type:
                services = [
                    await booking.resolve_service(session, ctx.organization_id, service_type)
                ]
            else:
                services = await booking.active_services(session, ctx.organization_id)
            answer: dict[str, Any] = {"date": f"{day:%Y-%m-%d}", "day": booking.describe_day(day)}
            if not is_open_day(org.policy, day):
                answer["closed"] = "A loja não abre nesse dia."
            per_service = {}
            for service in services:
                slots = await booking.day_slots(session, org, service, day, now)
                if slots or service_type:
                    per_service[service.name] = group_by_period(slots, org.zone)
            answer["slots"] = per_service
            if service_type and not any(per_service.values()):
                later = await booking.next_free_days(session, org, services[0], day, now)
                answer["next_available"] = {
                    f"{d:%Y-%m-%d} ({booking.describe_day(d)})": group_by_period(s, org.zone)
                    for d, s in later
                }
        return result(**answer)

    @tool
    async def book_appointment(
        pet_name: str,
        service_type: str,
        preferred_date: str,
        preferred_time: str,
        runtime: ToolRuntime[ClientContext],
    ) -> str:
        """Agenda um serviço para um pet já cadastrado do cliente, se o horário estiver livre.

        Exemplo: book_appointment(pet_name="Rex", service_type="Consulta Veterinária Geral",
        preferred_date="2026-11-26", preferred_time="10:00")
        """
        ctx = trusted(runtime)
        now = deps.clock()
        async with transaction() as session:
            org = await booking.load_policy(session, ctx.organization_id)
            start = booking.parse_local(org, preferred_date, preferred_time)
            not_past(org, start, now)
            pet = await booking.find_pet(session, ctx.organization_id, ctx.contact_id, pet_name)
            if pet is None:
                raise ToolError(
                    f"O pet '{pet_name}' não está cadastrado para este cliente. "
                    "Pergunte os dados e use register_pet antes de agendar."
                )
            service = await booking.resolve_service(session, ctx.organization_id, service_type)
            appointment = await booking.book(
                session,
                org,
                contact_id=ctx.contact_id,
                pet_id=pet.id,
                service=service,
                start=start,
                now=now,
                source="client_ai",
            )
            return result(
                outcome="agendado",
                **describe(appointment, org, **await names(session, appointment)),
                duration_minutes=service.duration_minutes,
            )

    @tool
    async def list_my_appointments(runtime: ToolRuntime[ClientContext]) -> str:
        """Lista os próximos agendamentos deste cliente (com o número de cada um).

        Exemplo: list_my_appointments()
        """
        ctx = trusted(runtime)
        async with transaction() as session:
            org = await booking.load_policy(session, ctx.organization_id)
            rows = await session.exec(
                select(Appointment)
                .where(
                    Appointment.organization_id == ctx.organization_id,
                    Appointment.contact_id == ctx.contact_id,
                    col(Appointment.status).in_(UPCOMING_STATUSES),
                    col(Appointment.starts_at) >= deps.clock(),
                )
                .order_by(col(Appointment.starts_at))
            )
            items = [describe(a, org, **await names(session, a)) for a in rows]
        return result(appointments=items)

    @tool
    async def cancel_appointment(appointment_id: int, runtime: ToolRuntime[ClientContext]) -> str:
        """Cancela um agendamento deste cliente, pelo número. Confirme com o cliente antes.

        Exemplo: cancel_appointment(appointment_id=12)
        """
        ctx = trusted(runtime)
        async with transaction() as session:
            org = await booking.load_policy(session, ctx.organization_id)
            appointment = await own_appointment(session, ctx, appointment_id)
            await booking.cancel(session, appointment, deps.clock())
            return result(
                outcome="cancelado",
                **describe(appointment, org, **await names(session, appointment)),
            )

    @tool
    async def reschedule_appointment(
        appointment_id: int, new_date: str, new_time: str, runtime: ToolRuntime[ClientContext]
    ) -> str:
        """Remarca um agendamento deste cliente para outra data (AAAA-MM-DD) e horário (HH:MM).

        Exemplo: reschedule_appointment(appointment_id=12, new_date="2026-11-27", new_time="14:00")
        """
        ctx = trusted(runtime)
        now = deps.clock()
        async with transaction() as session:
            org = await booking.load_policy(session, ctx.organization_id)
            appointment = await own_appointment(session, ctx, appointment_id)
            service = await session.get(Service, appointment.service_id)
            if service is None:
                raise ToolError("Serviço do agendamento não encontrado.")
            start = booking.parse_local(org, new_date, new_time)
            not_past(org, start, now)
            moved = await booking.move(session, org, appointment, service, start, now)
            return result(
                outcome="remarcado", **describe(moved, org, **await names(session, moved))
            )

    @tool
    async def escalate_to_human(reason: str, runtime: ToolRuntime[ClientContext]) -> Command[Any]:
        """Passa a conversa para uma pessoa da equipe; depois disso o robô não responde mais aqui.

        Use para emergências ou suspeita de doença, pedido de falar com alguém, reclamações
        ou o que você não puder resolver. Exemplo: escalate_to_human(reason="cachorro
        vomitando sangue")
        """
        ctx = trusted(runtime)
        async with transaction() as session:
            conversation = (
                await session.exec(
                    select(Conversation)
                    .where(
                        Conversation.organization_id == ctx.organization_id,
                        Conversation.id == ctx.conversation_id,
                        Conversation.contact_id == ctx.contact_id,
                    )
                    .with_for_update()
                )
            ).first()
            if conversation is None:
                raise ToolError("Conversa não encontrada.")
            alerts = await escalate(session, conversation, reason, deps.clock())
        text = result(
            status="encaminhado para a equipe",
            note="Avise o cliente que uma pessoa da equipe vai continuar o atendimento.",
        )
        return Command(
            update={
                "escalated": True,
                "alerts": alerts,
                "messages": [ToolMessage(text, tool_call_id=runtime.tool_call_id or "")],
            }
        )

    return [
        register_pet,
        check_availability,
        book_appointment,
        escalate_to_human,
        list_services,
        list_my_appointments,
        cancel_appointment,
        reschedule_appointment,
    ]
