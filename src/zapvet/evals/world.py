"""A scenario's world: its organization under a unique slug, its setup rows, its context.

Runs share one database and never see each other; `drop_world` deletes the organization
(and with it every row the run wrote).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.bridge.identity import normalise_phone, phone_key
from zapvet.evals.scenario import AppointmentRow, Person, Scenario, Setup
from zapvet.models import (
    Appointment,
    AuroraOwnerNumber,
    AuroraProactiveMessage,
    BusinessHours,
    Contact,
    ContactIdentity,
    Conversation,
    Organization,
    Pet,
    Resource,
    ResourceService,
    Service,
    outgoing_message,
)
from zapvet.org import apply_spec, load_spec
from zapvet.org.spec import OrgSpec
from zapvet.proactive.invitation import CARE, invitation_text
from zapvet.tools.context import AuroraContext, ClientContext


def _unique_spec(spec: OrgSpec, token: str) -> OrgSpec:
    org = spec.organization.model_copy(update={"slug": f"{spec.organization.slug}-{token}"})
    whatsapp = [
        entry.model_copy(
            update={"instance": f"{entry.instance}-{token}"}
            if entry.provider == "evolution"
            else {"phone_number_id": f"{entry.phone_number_id}-{token}"}
        )
        for entry in spec.whatsapp
    ]
    return spec.model_copy(update={"organization": org, "whatsapp": whatsapp})


def _with_limits(spec: OrgSpec, scenario: Scenario) -> OrgSpec:
    """The organization's `[limits]` with the keys the scenario sets replaced."""
    if scenario.limits is None:
        return spec
    given = scenario.limits.model_dump(exclude_unset=True)
    return spec.model_copy(update={"limits": spec.limits.model_copy(update=given)})


@dataclass
class World:
    """Where a run plays: its organization, the caller's context and the ids the setup wrote."""

    org_id: int
    zone: ZoneInfo
    context: ClientContext | AuroraContext
    contact_id: int
    refs: dict[str, int]
    snapshot: dict[str, tuple[Any, datetime]]
    clients: dict[str, int]


def local(moment: datetime, zone: ZoneInfo) -> datetime:
    """A scenario's naive time read in the organization's zone."""
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


class _Builder:
    """Writes a scenario's setup rows in one organization."""

    def __init__(self, session: Session, org: Organization) -> None:
        assert org.id is not None
        self.session, self.org_id, self.zone = session, org.id, ZoneInfo(org.timezone)
        self.refs: dict[str, int] = {}

    def service(self, name: str) -> Service:
        found = self.session.exec(
            select(Service).where(Service.organization_id == self.org_id, Service.name == name)
        ).first()
        if found is None:
            raise ValueError(f"setup names unknown service {name!r}")
        return found

    def resource_for(self, service: Service, name: str | None) -> Resource:
        query = select(Resource).where(Resource.organization_id == self.org_id)
        if name:
            query = query.where(Resource.name == name)
        else:
            query = query.join(
                ResourceService, col(ResourceService.resource_id) == col(Resource.id)
            ).where(ResourceService.service_id == service.id)
        found = self.session.exec(query.order_by(col(Resource.id))).first()
        if found is None:
            raise ValueError(f"no resource {name or 'performs ' + service.name!r}")
        return found

    def person(self, person: Person, pets: list[Any], appointments: list[AppointmentRow]) -> int:
        contact = Contact(organization_id=self.org_id, phone=person.phone, name=person.name)
        self.session.add(contact)
        self.session.flush()
        assert contact.id is not None
        # As a webhook leaves it: a media turn's webhook then finds this contact by phone.
        self.session.add(
            ContactIdentity(
                organization_id=self.org_id,
                contact_id=contact.id,
                kind="phone",
                value=phone_key(normalise_phone(person.phone)),
            )
        )
        by_name: dict[str, int] = {}
        for row in pets:
            pet = Pet(organization_id=self.org_id, contact_id=contact.id, **row.model_dump())
            self.session.add(pet)
            self.session.flush()
            assert pet.id is not None
            by_name[row.name] = pet.id
        for row in appointments:
            service = self.service(row.service)
            resource = self.resource_for(service, row.resource)
            start = local(row.start, self.zone)
            appointment = Appointment(
                organization_id=self.org_id,
                contact_id=contact.id,
                pet_id=by_name[row.pet] if row.pet else None,
                service_id=service.id or 0,
                resource_id=resource.id or 0,
                starts_at=start,
                ends_at=start + timedelta(minutes=service.duration_minutes),
                status=row.status,
                price_cents=service.price_cents,
                source="import",
            )
            self.session.add(appointment)
            self.session.flush()
            if row.ref:
                self.refs[row.ref] = appointment.id or 0
        return contact.id

    def conversation(self, contact_id: int, status: str, reason: str | None, now: datetime) -> int:
        conversation = Conversation(
            organization_id=self.org_id,
            contact_id=contact_id,
            status=status,  # type: ignore[arg-type]
            escalation_reason=reason,
            escalated_at=now if status == "escalated" else None,
        )
        self.session.add(conversation)
        self.session.flush()
        return conversation.id or 0

    def busy(self, setup: Setup) -> None:
        if not setup.busy:
            return
        filler = self.person(Person(phone="5500000000000", name="Agenda cheia"), [], [])
        for day in setup.busy:
            resource = self.session.exec(
                select(Resource).where(
                    Resource.organization_id == self.org_id, Resource.name == day.resource
                )
            ).one()
            link = self.session.exec(
                select(ResourceService).where(ResourceService.resource_id == resource.id)
            ).first()
            assert link is not None and resource.id is not None
            hours = self.session.exec(
                select(BusinessHours).where(
                    BusinessHours.organization_id == self.org_id,
                    BusinessHours.weekday == day.date.weekday(),
                )
            )
            for interval in hours:
                start = datetime.combine(day.date, interval.opens_at, tzinfo=self.zone)
                end = datetime.combine(day.date, interval.closes_at, tzinfo=self.zone)
                for _ in range(resource.capacity):
                    self.session.add(
                        Appointment(
                            organization_id=self.org_id,
                            contact_id=filler,
                            service_id=link.service_id,
                            resource_id=resource.id,
                            starts_at=start,
                            ends_at=end,
                            price_cents=0,
                            source="import",
                        )
                    )
        self.session.flush()


def build_world(engine: Engine, scenario: Scenario, token: str) -> World:
    """Apply the scenario's organization as `<slug>-<token>` (with its `limits`) and write
    its setup rows."""
    spec = _with_limits(_unique_spec(load_spec(scenario.org_path()), token), scenario)
    with Session(engine, expire_on_commit=False) as session:
        org_id = apply_spec(session, spec).organization_id
        org = session.get(Organization, org_id)
        assert org is not None
        builder = _Builder(session, org)
        setup = scenario.setup
        contact_id = builder.person(scenario.contact, setup.pets, setup.appointments)
        clients: dict[str, int] = {}
        for other in setup.others:
            clients[other.name or other.phone] = other_id = builder.person(
                other, other.pets, other.appointments
            )
            if other.conversation:
                builder.conversation(
                    other_id, other.conversation, other.escalation_reason, scenario.now
                )
        builder.busy(setup)
        conversation_id = builder.conversation(contact_id, setup.conversation, None, scenario.now)
        context: ClientContext | AuroraContext = ClientContext(
            organization_id=org_id, contact_id=contact_id, conversation_id=conversation_id
        )
        if scenario.agent == "aurora":
            key = phone_key(normalise_phone(scenario.contact.phone))
            owner = session.exec(
                select(AuroraOwnerNumber).where(
                    AuroraOwnerNumber.organization_id == org_id,
                    AuroraOwnerNumber.phone_key == key,
                )
            ).first()
            if owner is None:
                raise ValueError("an aurora scenario's contact must be an owner number of the org")
            context = AuroraContext(
                organization_id=org_id,
                owner_number_id=owner.id or 0,
                contact_id=contact_id,
                conversation_id=conversation_id,
            )
        session.commit()
        snapshot = {
            ref: (row.status, row.starts_at)
            for ref, row in (
                (ref, session.get(Appointment, id_)) for ref, id_ in builder.refs.items()
            )
            if row is not None
        }
        return World(
            org_id=org_id,
            zone=builder.zone,
            context=context,
            contact_id=contact_id,
            refs=builder.refs,
            snapshot=snapshot,
            clients=clients,
        )


async def send_care_invitation(
    sessions: async_sessionmaker[AsyncSession], scenario: Scenario, world: World
) -> str | None:
    """Store `setup.care_invitation` as our sent message in the customer's conversation (and
    as a sent invitation), worded as the scheduler words it at the scenario's `now`; its
    text, or None without one.

    Raises:
        ValueError: the pet or service is unknown, or nothing is due to offer.
    """
    wanted = scenario.setup.care_invitation
    if wanted is None:
        return None
    now = scenario.now
    async with sessions() as session, session.begin():
        pet = (
            await session.exec(
                select(Pet).where(
                    Pet.organization_id == world.org_id,
                    Pet.contact_id == world.contact_id,
                    Pet.name == wanted.pet,
                )
            )
        ).first()
        service = (
            await session.exec(
                select(Service).where(
                    Service.organization_id == world.org_id, Service.name == wanted.service
                )
            )
        ).first()
        if pet is None or pet.id is None or service is None or service.id is None:
            raise ValueError(f"care_invitation names unknown {wanted.pet!r} or {wanted.service!r}")
        content = await invitation_text(session, world.org_id, pet.id, service.id, now)
        if content is None:
            raise ValueError("care_invitation: no completed visit of it, or no free slot")
        invitation = AuroraProactiveMessage(
            organization_id=world.org_id,
            contact_id=world.contact_id,
            pet_id=pet.id,
            service_id=service.id,
            message_type=CARE,
            content=content,
            scheduled_for=now,
            status="sent",
            sent_at=now,
        )
        session.add(invitation)
        await session.flush()
        message = outgoing_message(
            organization_id=world.org_id,
            conversation_id=world.context.conversation_id,
            chat_id=scenario.contact.phone,
            content=content,
            now=now,
            sent_by_ai=True,
            meta={"proactive_id": invitation.id, "kind": CARE},
        )
        message.status = "sent"
        session.add(message)
    return content


def drop_world(engine: Engine, world: World) -> None:
    """Delete the run's organization, and with it every row the run wrote."""
    with Session(engine) as session:
        org = session.get(Organization, world.org_id)
        if org is not None:
            session.delete(org)
            session.commit()
