"""Aurora's proposal tools: each command is written down and runs only after the owner's "sim"."""

from __future__ import annotations

from typing import Literal

from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolRuntime
from sqlmodel import col, select

from zapvet.bridge.identity import digits_only
from zapvet.commands import blocking, privacy
from zapvet.commands.proposals import for_owner, propose
from zapvet.errors import ToolError
from zapvet.models import Appointment, Contact, Conversation, Service
from zapvet.money import format_brl
from zapvet.scheduling import booking
from zapvet.tools.aurora.access import Call, caller, resolve_client
from zapvet.tools.context import AuroraContext
from zapvet.tools.deps import ToolDeps
from zapvet.tools.schemas import tool


async def appointment_for(c: Call, appointment_id: int) -> tuple[Appointment, str]:
    """The organization's appointment by number, and how a preview names it.

    Raises:
        ToolError: no such appointment in this organization.
    """
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


async def number_to_block(c: Call, client: str) -> tuple[str, str]:
    """The international number of a client named by phone, "#id" or name, and how a preview
    names it; a phone nobody has written from yet is taken as typed.

    Raises:
        ToolError: no such client, several, or a client without a phone number.
    """
    org_id = c.owner.organization_id
    if len(digits_only(client)) >= 8:
        try:
            phone = blocking.parse_phone(client)
        except ValueError:
            raise ToolError(f"'{client}' não é um número de telefone válido.") from None
        contact = await blocking.find_by_phone(c.session, org_id, phone)
    else:
        contact = await resolve_client(c.session, org_id, client)
        if not contact.phone:
            raise ToolError(f"{contact.name or 'O cliente'} não tem telefone cadastrado.")
        phone = blocking.parse_phone(contact.phone)
    if contact is not None and contact.name:
        return phone, f"{contact.name} (+{phone})"
    return phone, f"+{phone}"


def make_proposal_tools(deps: ToolDeps) -> list[BaseTool]:
    """Aurora's command tools, which only propose, bound to this process's database and clock."""
    call = caller(deps)

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

    @tool
    async def block_contact(client: str, runtime: ToolRuntime[AuroraContext]) -> str:
        """PROPÕE bloquear um número: as mensagens dele continuam guardadas, mas o robô para
        de responder. Aceita telefone (mesmo de quem nunca escreveu), nome ou #id.
        Exemplo: block_contact(client="+55 11 97777-6666")
        """
        async with call(runtime) as c:
            phone, label = await number_to_block(c, client)
            org_id = c.owner.organization_id
            contact = await blocking.find_by_phone(c.session, org_id, phone)
            if await blocking.is_owner(c.session, org_id, contact, phone):
                raise ToolError(f"{label} é um número do dono: não pode ser bloqueado.")
            if contact is not None and contact.status == "blocked":
                raise ToolError(f"{label} já está bloqueado.")
            return await propose(
                c.session, c.owner, action="block_contact", payload={"phone": phone},
                preview=f"bloquear {label}: o robô não responderá mais.", now=deps.clock(),
            )  # fmt: skip

    @tool
    async def unblock_contact(client: str, runtime: ToolRuntime[AuroraContext]) -> str:
        """PROPÕE desbloquear um número bloqueado: o robô volta a responder as próximas
        mensagens. Exemplo: unblock_contact(client="11 97777-6666")
        """
        async with call(runtime) as c:
            phone, label = await number_to_block(c, client)
            contact = await blocking.find_by_phone(c.session, c.owner.organization_id, phone)
            if contact is None or contact.status != "blocked":
                raise ToolError(f"{label} não está bloqueado.")
            return await propose(
                c.session, c.owner, action="unblock_contact", payload={"phone": phone},
                preview=f"desbloquear {label}: o robô voltará a responder.", now=deps.clock(),
            )  # fmt: skip

    @tool
    async def forget_client(client: str, runtime: ToolRuntime[AuroraContext]) -> str:
        """PROPÕE apagar os dados pessoais de um cliente (LGPD: direito de exclusão): nome,
        telefone, mensagens e transcrições, nomes e anotações dos pets. Agendamentos e valores
        ficam, anônimos. Não dá para desfazer. Use só quando o dono pedir. Aceita telefone,
        nome ou #id. Exemplo: forget_client(client="#12")
        """
        async with call(runtime) as c:
            contact = await resolve_client(c.session, c.owner.organization_id, client)
            if privacy.is_forgotten(contact):
                raise ToolError("Os dados desse cliente já foram apagados.")
            return await propose(
                c.session, c.owner, action="forget_client", payload={"contact_id": contact.id},
                preview=privacy.erasure_preview(contact), now=deps.clock(),
            )  # fmt: skip

    return [
        create_appointment,
        cancel_appointment,
        reschedule_appointment,
        mark_appointment,
        update_contact,
        hand_back_conversation,
        send_message,
        block_contact,
        unblock_contact,
        forget_client,
    ]
