"""Owner commands as they run after the "sim": one executor per action, each audited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.bridge.directory import open_conversation
from zapvet.commands import blocking, privacy
from zapvet.commands.proposals import Owner, for_owner
from zapvet.errors import ToolError
from zapvet.models import (
    Appointment,
    AuditLog,
    Contact,
    Conversation,
    Service,
    WhatsAppInstance,
    outgoing_message,
)
from zapvet.scheduling import booking
from zapvet.webhooks.events import EventType, emit


def snapshot(row: Any) -> dict[str, Any]:
    """A JSON-ready copy of a row's columns, for the audit log."""
    data = row.model_dump()
    return {
        k: v.isoformat() if isinstance(v, datetime | date | time) else v for k, v in data.items()
    }


async def _audit(job: Job, action: str, row: Any, before: dict[str, Any] | None) -> None:
    """Record `job`'s change; its "when" is the job's clock, like the change it records."""
    session, owner = job.session, job.owner
    await session.flush()
    session.add(
        AuditLog(
            organization_id=owner.organization_id,
            actor_kind="owner",
            actor_id=owner.owner_number_id,
            action=action,
            entity=row.__tablename__,
            entity_id=row.id,
            before=before,
            after=snapshot(row),
            created_at=job.now,
        )
    )


async def _emit(
    job: Job, event: EventType, about: int | None, extra: dict[str, Any] | None = None
) -> None:
    """The change's webhook event, in the job's transaction (after `_audit` flushed it)."""
    await emit(
        await job.session.connection(),
        event,
        organization_id=job.owner.organization_id,
        about=about or 0,
        now=job.now,
        extra=extra,
    )


async def _appointment(session: AsyncSession, owner: Owner, appointment_id: int) -> Appointment:
    found = (
        await session.exec(
            select(Appointment)
            .where(
                Appointment.organization_id == owner.organization_id,
                Appointment.id == appointment_id,
            )
            .with_for_update()
        )
    ).first()
    if found is None:
        raise ToolError(f"O agendamento #{appointment_id} não existe mais.")
    return found


@dataclass(frozen=True)
class Job:
    """One confirmed proposal being carried out."""

    session: AsyncSession
    owner: Owner
    org: booking.OrgPolicy
    payload: dict[str, Any]
    now: datetime


Executor = Callable[[Job], Awaitable[str]]


async def _create(job: Job) -> str:
    session, owner, org, p, now = job.session, job.owner, job.org, job.payload, job.now
    service = await session.get(Service, p["service_id"])
    if service is None or service.organization_id != owner.organization_id:
        raise ToolError("O serviço não existe mais.")
    appointment = await booking.book(
        session,
        for_owner(org),
        contact_id=p["contact_id"],
        pet_id=p.get("pet_id"),
        service=service,
        start=datetime.fromisoformat(p["start"]),
        now=now,
        source="aurora",
    )
    await _audit(job, "create_appointment", appointment, None)
    return f"Feito: agendamento #{appointment.id} criado."


async def _cancel(job: Job) -> str:
    session, owner, p, now = job.session, job.owner, job.payload, job.now
    appointment = await _appointment(session, owner, p["appointment_id"])
    if appointment.status not in ("scheduled", "confirmed"):
        raise ToolError(f"O agendamento #{appointment.id} já está '{appointment.status}'.")
    before = snapshot(appointment)
    await booking.cancel(session, appointment, now)
    await _audit(job, "cancel_appointment", appointment, before)
    return f"Feito: agendamento #{appointment.id} cancelado."


async def _reschedule(job: Job) -> str:
    session, owner, org, p, now = job.session, job.owner, job.org, job.payload, job.now
    appointment = await _appointment(session, owner, p["appointment_id"])
    service = await session.get(Service, appointment.service_id)
    if service is None or appointment.status not in ("scheduled", "confirmed"):
        raise ToolError(f"O agendamento #{appointment.id} não pode mais ser remarcado.")
    before = snapshot(appointment)
    start = datetime.fromisoformat(p["start"])
    await booking.move(session, for_owner(org), appointment, service, start, now)
    await _audit(job, "reschedule_appointment", appointment, before)
    when = booking.describe_moment(appointment.starts_at.astimezone(org.zone))
    return f"Feito: agendamento #{appointment.id} remarcado para {when}."


async def _mark(job: Job) -> str:
    session, owner, p = job.session, job.owner, job.payload
    appointment = await _appointment(session, owner, p["appointment_id"])
    before = snapshot(appointment)
    appointment.status = p["status"]
    await _audit(job, "mark_appointment", appointment, before)
    event: EventType = (
        "appointment.completed" if p["status"] == "completed" else "appointment.no_show"
    )
    await _emit(job, event, appointment.id)
    label = "concluído" if p["status"] == "completed" else "falta (não compareceu)"
    return f"Feito: agendamento #{appointment.id} marcado como {label}."


async def _update_contact(job: Job) -> str:
    session, owner, p = job.session, job.owner, job.payload
    contact = await session.get(Contact, p["contact_id"])
    if contact is None or contact.organization_id != owner.organization_id:
        raise ToolError("O cliente não existe mais.")
    before = snapshot(contact)
    for key, value in p["changes"].items():
        setattr(contact, key, value)
    await _audit(job, "update_contact", contact, before)
    changed = [key for key in p["changes"] if before.get(key) != snapshot(contact).get(key)]
    if changed:
        await _emit(job, "contact.updated", contact.id, extra={"changes": changed})
    return f"Feito: cadastro de {contact.name or contact.phone} atualizado."


async def _hand_back(job: Job) -> str:
    session, owner, p = job.session, job.owner, job.payload
    conversation = await session.get(Conversation, p["conversation_id"], with_for_update=True)
    if conversation is None or conversation.organization_id != owner.organization_id:
        raise ToolError("A conversa não existe mais.")
    before = snapshot(conversation)
    conversation.status, conversation.bot_paused_until = "active", None
    await _audit(job, "hand_back_conversation", conversation, before)
    if before["status"] != "active" or before["bot_paused_until"] is not None:
        await _emit(job, "conversation.handed_back", conversation.id)
    return "Feito: a conversa voltou para o atendimento automático."


async def _send_message(job: Job) -> str:
    session, owner, p, now = job.session, job.owner, job.payload, job.now
    conversation = await open_conversation(session, owner.organization_id, p["contact_id"], now)
    instance = (
        await session.exec(
            select(WhatsAppInstance).where(
                WhatsAppInstance.organization_id == owner.organization_id,
                col(WhatsAppInstance.is_active),
            )
        )
    ).first()
    message = outgoing_message(
        organization_id=owner.organization_id,
        conversation_id=conversation.id or 0,
        instance_id=instance.id if instance else None,
        content=p["text"],
        now=now,
        sent_by_ai=False,
        meta={"via": "aurora", "owner_number_id": owner.owner_number_id},
    )
    session.add(message)
    await _audit(job, "send_message", message, None)
    return "Feito: a mensagem foi colocada na fila de envio para o cliente."


async def _block(job: Job, *, blocked: bool) -> str:
    actor = blocking.Actor("owner", job.owner.owner_number_id)
    try:
        done = await blocking.set_blocked(
            job.session, job.owner.organization_id, job.payload["phone"],
            blocked=blocked, actor=actor, now=job.now,
        )  # fmt: skip
    except blocking.OwnerNumberRefused:
        raise ToolError("Esse é um número do dono: ele não pode ser bloqueado.") from None
    # The preview named the number; the reply does not repeat it (nor anything stored).
    if not done.changed:
        state = "já estava" if blocked else "não estava"
        return f"Nada a fazer: o número {state} bloqueado."
    if blocked:
        return "Feito: número bloqueado. As mensagens dele serão guardadas, sem resposta."
    return "Feito: número desbloqueado. As próximas mensagens dele serão respondidas."


async def _block_contact(job: Job) -> str:
    return await _block(job, blocked=True)


async def _unblock_contact(job: Job) -> str:
    return await _block(job, blocked=False)


async def _forget_client(job: Job) -> str:
    contact = await job.session.get(Contact, job.payload["contact_id"], with_for_update=True)
    if contact is None or contact.organization_id != job.owner.organization_id:
        raise ToolError("Esse cliente não existe mais.")
    if privacy.is_forgotten(contact):
        return "Nada a fazer: os dados desse cliente já tinham sido apagados."
    actor = blocking.Actor("owner", job.owner.owner_number_id)
    await privacy.forget(job.session, contact, actor=actor, now=job.now)
    return (
        "Feito: os dados pessoais do cliente foram apagados (LGPD). Agendamentos e valores "
        "continuam, anônimos."
    )


EXECUTORS: dict[str, Executor] = {
    "create_appointment": _create,
    "cancel_appointment": _cancel,
    "reschedule_appointment": _reschedule,
    "mark_appointment": _mark,
    "update_contact": _update_contact,
    "hand_back_conversation": _hand_back,
    "send_message": _send_message,
    "block_contact": _block_contact,
    "unblock_contact": _unblock_contact,
    "forget_client": _forget_client,
}
