"""A short description of every organization in the database, for `zapvet status`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select

from zapvet.models import (
    AuroraOwnerNumber,
    InstanceConnection,
    Organization,
    Resource,
    Service,
    WhatsAppInstance,
)


@dataclass(frozen=True)
class OrgSummary:
    slug: str
    name: str
    timezone: str
    services: int
    resources: int
    owners: int
    instances: tuple[tuple[str, str], ...]
    #: Instance name → the connection state its gateway last reported, and since when.
    connections: dict[str, tuple[str, datetime]] = field(default_factory=dict)


def summarise(session: Session) -> list[OrgSummary]:
    """Every organization with its active catalogue, staff, owners and WhatsApp instances."""

    def count(model: type[Service] | type[Resource] | type[AuroraOwnerNumber], org_id: int) -> int:
        query = select(func.count()).where(
            model.organization_id == org_id,
            model.is_active,
        )
        return int(session.exec(query).one())

    summaries = []
    for org in session.exec(select(Organization).order_by(Organization.slug)):
        assert org.id is not None
        instances = list(
            session.exec(
                select(WhatsAppInstance).where(
                    WhatsAppInstance.organization_id == org.id, WhatsAppInstance.is_active
                )
            )
        )
        names = {i.id: i.instance for i in instances}
        reported = session.exec(
            select(InstanceConnection).where(InstanceConnection.organization_id == org.id)
        )
        connections: dict[str, tuple[str, datetime]] = {
            names[c.instance_id]: (c.state, c.changed_at)
            for c in reported
            if c.instance_id in names
        }
        summaries.append(
            OrgSummary(
                slug=org.slug,
                name=org.name,
                timezone=org.timezone,
                services=count(Service, org.id),
                resources=count(Resource, org.id),
                owners=count(AuroraOwnerNumber, org.id),
                instances=tuple((i.provider, i.instance) for i in instances),
                connections=connections,
            )
        )
    return summaries
