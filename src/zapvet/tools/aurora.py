"""Aurora's tools: figures computed by SQL, and commands that only propose (see `commands`).

Identity comes from the runtime context, and every call re-checks that the owner number is
still active in that organization. Every query is scoped by that organization.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date as Day
from typing import Literal

from langchain_core.tools import BaseTool, tool
from langgraph.prebuilt import ToolRuntime
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.analytics import figures
from zapvet.bridge.identity import digits_only, normalise_phone, phone_variants
from zapvet.commands.proposals import Owner, for_owner, owner_number, propose
from zapvet.errors import ToolError
from zapvet.models import Appointment, Contact, Conversation, Pet, Service
from zapvet.money import format_brl
from zapvet.scheduling import booking
from zapvet.scheduling.availability import group_by_period
from zapvet.scheduling.catalogue import fold
from zapvet.tools.client import result
from zapvet.tools.context import AuroraContext
from zapvet.tools.deps import ToolDeps

_ID = re.compile(r"^#?(\d{1,9})$")


@dataclass(frozen=True)
class _Call:
    session: AsyncSession
    owner: Owner
    org: booking.OrgPolicy


def _context(runtime: ToolRuntime[AuroraContext]) -> AuroraContext:
    context = runtime.context
    if isinstance(context, dict):
        context = AuroraContext(**context)
    if not isinstance(context, AuroraContext) or not context.complete:
        raise ToolError("Não consigo confirmar que esta conversa é do dono; nada foi feito.")
    return context


def _phones(text: str) -> tuple[str, ...]:
    """Stored spellings of a phone the owner typed, with or without "+55" and the ninth digit."""
    try:
        return phone_variants(normalise_phone(text))
    except ValueError:
        return phone_variants(text)


async def resolve_client(session: AsyncSession, org_id: int, query: str) -> Contact:
    """A client named by "#id", phone (with or without the ninth digit) or (part of) name.

    Raises:
        ToolError: none or several match (the several are listed).
    """
    text = query.strip()
    base = select(Contact).where(Contact.organization_id == org_id)
    by_id = _ID.match(text)
    if by_id:
        found = (await session.exec(base.where(Contact.id == int(by_id[1])))).all()
    elif len(digits_only(text)) >= 8:
        found = (await session.exec(base.where(col(Contact.phone).in_(_phones(text))))).all()
    else:
        wanted = fold(text)
        found = [c for c in await session.exec(base) if c.name and wanted in fold(c.name)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ToolError(f"Nenhum cliente encontrado para '{query}'. Use find_client.")
    options = "; ".join(f"#{c.id} {c.name or '-'} ({c.phone or 'sem telefone'})" for c in found[:8])
    raise ToolError(f"Mais de um cliente para '{query}': {options}. Pergunte qual.")


def _loosely_matches(contact: Contact, query: str) -> bool:
    """Part of the name (any case and accents) or part of the phone's digits."""
    digits = digits_only(query)
    if fold(query) and fold(query) in fold(contact.name or ""):
        return True
    return bool(digits) and digits in (contact.phone or "")


def make_aurora_tools(deps: ToolDeps) -> list[BaseTool]:
    """Aurora's read tools and command tools, bound to this process's database and clock."""

    @asynccontextmanager
    async def call(runtime: ToolRuntime[AuroraContext]) -> AsyncIterator[_Call]:
        context = _context(runtime)
        owner = Owner(context.organization_id, context.owner_number_id)
        async with deps.sessions() as session, session.begin():
            if await owner_number(session, owner) is None:
                raise ToolError("Este número não está autorizado a usar a Aurora.")
            org = await booking.load_policy(session, context.organization_id)
            yield _Call(session, owner, org)

    def day_of(org: booking.OrgPolicy, text: str) -> Day:
        return booking.parse_local(org, text).date()

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
                contacts = [x for x in everyone if _loosely_matches(x, query)][:10]
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

    async def appointment_for(c: _Call, appointment_id: int) -> tuple[Appointment, str]:
        row = (
            await c.session.exec(
                select(Appointment, Contact.name, Service.name)
                .join(Contact, col(Contact.id) == col(Appointment.contact_id))
                .join(Service, col(Service.id) == col(Appointment.service_id))
                .where(
                    Appointment.organization_id == c.owner.organization_id,
                    Appointment.id == appointment_id,
                )
            )
        ).first()
        if row is None:
            raise ToolError(f"Não existe o agendamento #{appointment_id}.")
        appointment, client, service = row
        when = booking.describe_moment(appointment.starts_at.astimezone(c.org.zone))
        return appointment, f"#{appointment.id} {service} de {client or 'cliente'} em {when}"

    @tool
    async def create_appointment(
        client: str,
        pet_name: str,
        service_type: str,
        date: str,
        time: str,
        runtime: ToolRuntime[AuroraContext],
    ) -> str:
        """PROPÕE um agendamento para um cliente (nome, telefone ou #id) e pet já cadastrados.
        Só executa depois que o dono responder "sim".

        Exemplo: create_appointment(client="Marina", pet_name="Rex", service_type="banho",
        date="2026-11-26", time="10:00")
        """
        async with call(runtime) as c:
            org_id = c.owner.organization_id
            contact = await resolve_client(c.session, org_id, client)
            pet = await booking.find_pet(c.session, org_id, contact.id or 0, pet_name)
            if pet is None:
                raise ToolError(f"{contact.name or 'O cliente'} não tem pet chamado '{pet_name}'.")
            service = await booking.resolve_service(c.session, org_id, service_type)
            start = booking.parse_local(c.org, date, time)
            slots = await booking.day_slots(
                c.session, for_owner(c.org), service, start.date(), deps.clock()
            )
            if start not in {s.start for s in slots}:
                raise ToolError(
                    f"{booking.describe_moment(start)} não está livre para {service.name}. "
                    "Consulte free_slots."
                )
            preview = (
                f"agendar {service.name} para {pet.name} ({contact.name or contact.phone}) em "
                f"{booking.describe_moment(start)}, {format_brl(service.price_cents)}."
            )
            payload = {
                "contact_id": contact.id,
                "pet_id": pet.id,
                "service_id": service.id,
                "start": start.isoformat(),
            }
            return await propose(
                c.session, c.owner, action="create_appointment", payload=payload,
                preview=preview, now=deps.clock(),
            )  # fmt: skip

    @tool
    async def cancel_appointment(appointment_id: int, runtime: ToolRuntime[AuroraContext]) -> str:
        """PROPÕE cancelar um agendamento pelo número. Só executa depois do "sim" do dono.

        Exemplo: cancel_appointment(appointment_id=12)
        """
        async with call(runtime) as c:
            appointment, label = await appointment_for(c, appointment_id)
            if appointment.status not in ("scheduled", "confirmed"):
                raise ToolError(f"O agendamento #{appointment_id} já está '{appointment.status}'.")
            return await propose(
                c.session, c.owner, action="cancel_appointment",
                payload={"appointment_id": appointment_id}, preview=f"cancelar {label}.",
                now=deps.clock(),
            )  # fmt: skip

    @tool
    async def reschedule_appointment(
        appointment_id: int, new_date: str, new_time: str, runtime: ToolRuntime[AuroraContext]
    ) -> str:
        """PROPÕE remarcar um agendamento para nova data (AAAA-MM-DD) e horário (HH:MM).

        Exemplo: reschedule_appointment(appointment_id=12, new_date="2026-11-27", new_time="14:00")
        """
        async with call(runtime) as c:
            appointment, label = await appointment_for(c, appointment_id)
            start = booking.parse_local(c.org, new_date, new_time)
            return await propose(
                c.session, c.owner, action="reschedule_appointment",
                payload={"appointment_id": appointment_id, "start": start.isoformat()},
                preview=f"remarcar {label} para {booking.describe_moment(start)}.",
                now=deps.clock(),
            )  # fmt: skip

    @tool
    async def mark_appointment(
        appointment_id: int,
        status: Literal["completed", "no_show"],
        runtime: ToolRuntime[AuroraContext],
    ) -> str:
        """PROPÕE marcar um agendamento que já começou como concluído ("completed") ou como
        falta ("no_show"). Exemplo: mark_appointment(appointment_id=12, status="no_show")
        """
        async with call(runtime) as c:
            appointment, label = await appointment_for(c, appointment_id)
            if appointment.starts_at > deps.clock():
                raise ToolError(f"O agendamento #{appointment_id} ainda não começou.")
            word = "concluído" if status == "completed" else "falta (não compareceu)"
            return await propose(
                c.session, c.owner, action="mark_appointment",
                payload={"appointment_id": appointment_id, "status": status},
                preview=f"marcar {label} como {word}.", now=deps.clock(),
            )  # fmt: skip

    @tool
    async def update_contact(
        client: str,
        runtime: ToolRuntime[AuroraContext],
        name: str | None = None,
        notes: str | None = None,
    ) -> str:
        """PROPÕE atualizar o nome e/ou as observações de um cliente.

        Exemplo: update_contact(client="11 97777-6666", name="Marina Souza")
        """
        changes = {k: v.strip() for k, v in (("name", name), ("notes", notes)) if v and v.strip()}
        if not changes:
            raise ToolError("Diga o que mudar: nome ou observações.")
        async with call(runtime) as c:
            contact = await resolve_client(c.session, c.owner.organization_id, client)
            shown = ", ".join(f"{k} → {v!r}" for k, v in changes.items())
            return await propose(
                c.session, c.owner, action="update_contact",
                payload={"contact_id": contact.id, "changes": changes},
                preview=f"atualizar {contact.name or contact.phone}: {shown}.", now=deps.clock(),
            )  # fmt: skip

    @tool
    async def hand_back_conversation(client: str, runtime: ToolRuntime[AuroraContext]) -> str:
        """PROPÕE devolver ao atendimento automático a conversa de um cliente que está com a
        equipe (encaminhada, ou respondida por alguém pelo celular da loja).
        Exemplo: hand_back_conversation(client="Sérgio")
        """
        async with call(runtime) as c:
            org_id = c.owner.organization_id
            contact = await resolve_client(c.session, org_id, client)
            conversation = (
                await c.session.exec(
                    select(Conversation).where(
                        Conversation.organization_id == org_id,
                        Conversation.contact_id == contact.id,
                        (col(Conversation.status) == "escalated")
                        | (col(Conversation.bot_paused_until) > deps.clock()),
                    )
                )
            ).first()
            if conversation is None:
                raise ToolError(
                    f"A conversa de {contact.name or contact.phone} não está com a equipe."
                )
            return await propose(
                c.session, c.owner, action="hand_back_conversation",
                payload={"conversation_id": conversation.id},
                preview=f"devolver ao robô a conversa de {contact.name or contact.phone} "
                f"(motivo do encaminhamento: {conversation.escalation_reason or '-'}).",
                now=deps.clock(),
            )  # fmt: skip

    @tool
    async def send_message(client: str, text: str, runtime: ToolRuntime[AuroraContext]) -> str:
        """PROPÕE enviar uma mensagem de WhatsApp a um cliente, com o texto exato informado.

        Exemplo: send_message(client="Marina", text="Oi Marina! O Rex já está pronto.")
        """
        if not text.strip():
            raise ToolError("Informe o texto da mensagem.")
        async with call(runtime) as c:
            contact = await resolve_client(c.session, c.owner.organization_id, client)
            return await propose(
                c.session, c.owner, action="send_message",
                payload={"contact_id": contact.id, "text": text.strip()},
                preview=f"enviar para {contact.name or contact.phone}: “{text.strip()}”",
                now=deps.clock(),
            )  # fmt: skip

    return [
        business_summary,
        list_appointments,
        free_slots,
        top_services,
        new_clients,
        inactive_clients,
        find_client,
        create_appointment,
        cancel_appointment,
        reschedule_appointment,
        mark_appointment,
        update_contact,
        hand_back_conversation,
        send_message,
    ]
