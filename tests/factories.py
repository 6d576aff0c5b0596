"""Small builders for rows tests need, committed through a session."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from zapvet.models import Appointment, Contact, Organization, Pet, Resource, Service
from zapvet.org import apply_spec, load_spec
from zapvet.org.apply import ApplyReport


def apply_example(session: Session, path: str) -> ApplyReport:
    """Apply an organization file and commit."""
    report = apply_spec(session, load_spec(path))
    session.commit()
    return report


def make_org(
    session: Session, slug: str = "acme", *, capacity: int = 1
) -> tuple[Organization, Resource, Service]:
    """An organization with one service (30 min, R$ 120,00) and one resource."""
    org = Organization(slug=slug, name=slug.title())
    session.add(org)
    session.flush()
    assert org.id is not None
    service = Service(
        organization_id=org.id,
        name="Consulta",
        category="consulta",
        duration_minutes=30,
        price_cents=12000,
    )
    resource = Resource(organization_id=org.id, name="Dra. Ana", capacity=capacity)
    session.add_all([service, resource])
    session.commit()
    return org, resource, service


def make_contact(
    session: Session, org: Organization, phone: str = "5511999990000", pet: str | None = "Rex"
) -> tuple[Contact, Pet | None]:
    assert org.id is not None
    contact = Contact(organization_id=org.id, phone=phone, name="Tutor")
    session.add(contact)
    session.flush()
    assert contact.id is not None
    animal = None
    if pet:
        animal = Pet(organization_id=org.id, contact_id=contact.id, name=pet, species="cachorro")
        session.add(animal)
    session.commit()
    return contact, animal


def appointment(
    org: Organization,
    resource: Resource,
    service: Service,
    contact: Contact,
    starts_at: datetime,
    minutes: int = 30,
    **extra: object,
) -> Appointment:
    assert org.id and resource.id and service.id and contact.id
    return Appointment(
        organization_id=org.id,
        contact_id=contact.id,
        service_id=service.id,
        resource_id=resource.id,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=minutes),
        price_cents=service.price_cents,
        **extra,  # type: ignore[arg-type]
    )


def org_by_slug(session: Session, slug: str) -> Organization:
    return session.exec(select(Organization).where(Organization.slug == slug)).one()
