"""A seeded business day for Aurora: the seed's 12 clients, 8 banhos, 3 consultas, 1 tosa."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from tests.conftest import SAO_PAULO
from zapvet.models import Appointment, Contact, Organization, Pet, Resource, Service

DAY = datetime(2026, 11, 25, tzinfo=SAO_PAULO)


def _at(hour: int, minute: int = 0, day: datetime = DAY) -> datetime:
    return day.replace(hour=hour) + timedelta(minutes=minute)


def seed_day(session: Session, org: Organization) -> None:
    """12 served clients on 25/11 (R$ 850,00), plus rows that must not count."""
    assert org.id is not None
    services = {
        s.name: s for s in session.exec(select(Service).where(Service.organization_id == org.id))
    }
    resources = {
        r.name: r for r in session.exec(select(Resource).where(Resource.organization_id == org.id))
    }
    plan = (
        [("Banho", "Carla", _at(8 + i)) for i in range(4)]
        + [("Banho", "Marcos", _at(8 + i)) for i in range(4)]
        + [("Consulta Veterinária Geral", "Dra. Ana", _at(8, 30 * i)) for i in range(3)]
        + [("Tosa Completa", "Carla", _at(13))]
    )
    for index, (service_name, resource_name, start) in enumerate(plan):
        add(session, org, f"55119100000{index:02d}", f"Cliente {index + 1}", services[service_name],
            resources[resource_name], start, "completed")  # fmt: skip
    # Noise: none of these is revenue or a client served on 25/11.
    add(
        session,
        org,
        "5511920000001",
        "Cancelou",
        services["Banho"],
        resources["Marcos"],
        _at(14),
        "cancelled",
    )
    add(
        session,
        org,
        "5511920000002",
        "Faltou",
        services["Banho"],
        resources["Marcos"],
        _at(15),
        "no_show",
    )
    add(
        session,
        org,
        "5511920000003",
        "Ainda vem",
        services["Banho"],
        resources["Marcos"],
        _at(17),
        "scheduled",
    )
    add(session, org, "5511920000004", "Ontem", services["Banho"], resources["Marcos"],
        _at(10, day=DAY - timedelta(days=1)), "completed")  # fmt: skip
    session.commit()


def add(
    session: Session,
    org: Organization,
    phone: str,
    name: str,
    service: Service,
    resource: Resource,
    start: datetime,
    status: str,
) -> Appointment:
    assert org.id is not None
    contact = Contact(organization_id=org.id, phone=phone, name=name)
    session.add(contact)
    session.flush()
    assert contact.id is not None
    pet = Pet(
        organization_id=org.id, contact_id=contact.id, name=f"Pet de {name}", species="cachorro"
    )
    session.add(pet)
    session.flush()
    appointment = Appointment(
        organization_id=org.id,
        contact_id=contact.id,
        pet_id=pet.id,
        service_id=service.id or 0,
        resource_id=resource.id or 0,
        starts_at=start,
        ends_at=start + timedelta(minutes=service.duration_minutes),
        status=status,  # type: ignore[arg-type]
        price_cents=service.price_cents,
        source="import",
    )
    session.add(appointment)
    session.flush()
    return appointment
