"""An organization's configuration, read once per process and checked by one number per turn.

Instances, owner numbers, AI settings, active services, hours and closures change rarely and
are read by every webhook and every turn. A process keeps them per organization together
with `organizations.config_version`, which the database bumps on any change to those rows
(migration 0005's triggers, whoever writes), so a turn that reads the current version
(usually fused into a query it makes anyway) never works from a stale configuration.

The cached rows are detached copies shared by every job of the process: read them, never
change them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.errors import UnknownOrganization as UnknownOrganization
from zapvet.models.catalog import Service
from zapvet.models.organization import AISettings, Organization
from zapvet.models.schedule import BusinessHours, Closure
from zapvet.models.webhook import WebhookEndpoint
from zapvet.models.whatsapp import AuroraOwnerNumber, WhatsAppInstance


@dataclass(frozen=True)
class OrgConfig:
    """One organization's configuration at `version`."""

    organization: Organization
    ai: AISettings | None
    hours: tuple[BusinessHours, ...]
    closures: tuple[Closure, ...]
    #: Active services, by category and name (what the prompts list).
    services: tuple[Service, ...]
    #: Active owner numbers.
    owners: tuple[AuroraOwnerNumber, ...]
    instances: tuple[WhatsAppInstance, ...]
    #: `[[webhooks]]` endpoints, enabled or not.
    webhooks: tuple[WebhookEndpoint, ...] = ()

    @property
    def organization_id(self) -> int:
        return self.organization.id or 0

    @property
    def version(self) -> int:
        return self.organization.config_version

    @property
    def debounce_seconds(self) -> int:
        return self.ai.debounce_seconds if self.ai else 3

    def listens(self, event_type: str) -> bool:
        """Whether an endpoint of the organization takes `event_type` (webhooks)."""
        return any(endpoint.listens_to(event_type) for endpoint in self.webhooks)

    def owner_for(
        self, *, phone_keys: set[str], lids: set[str], bsuids: set[str]
    ) -> AuroraOwnerNumber | None:
        """The active owner number matching any of these identities (the bridge's rule)."""
        for owner in self.owners:
            if (
                owner.phone_key in phone_keys
                or (owner.lid is not None and owner.lid in lids)
                or (owner.bsuid is not None and owner.bsuid in bsuids)
            ):
                return owner
        return None

    def instance(self, instance_id: int | None) -> WhatsAppInstance | None:
        """The instance with this id; None: the first active one."""
        for row in self.instances:
            if (instance_id is None and row.is_active) or row.id == instance_id:
                return row
        return None


async def current_version(session: AsyncSession, organization_id: int) -> int:
    """The organization's configuration version (one indexed read).

    Raises:
        UnknownOrganization: there is no such organization.
    """
    found = (
        await session.exec(
            select(Organization.config_version).where(Organization.id == organization_id)
        )
    ).first()
    if found is None:
        raise UnknownOrganization(organization_id)
    return int(found)


async def load_config(session: AsyncSession, organization_id: int) -> OrgConfig:
    """Read the organization's configuration (the version first: the rows are at least as
    new as it, so a change committed meanwhile only causes one more reload).

    Raises:
        UnknownOrganization: there is no such organization.
    """
    org = await session.get(Organization, organization_id, populate_existing=True)
    if org is None:
        raise UnknownOrganization(organization_id)
    ai = await session.get(AISettings, organization_id)
    hours = await session.exec(
        select(BusinessHours)
        .where(BusinessHours.organization_id == organization_id)
        .order_by(col(BusinessHours.weekday), col(BusinessHours.opens_at))
    )
    closures = await session.exec(
        select(Closure)
        .where(Closure.organization_id == organization_id)
        .order_by(col(Closure.date))
    )
    services = await session.exec(
        select(Service)
        .where(Service.organization_id == organization_id, col(Service.is_active))
        .order_by(col(Service.category), col(Service.name))
    )
    owners = await session.exec(
        select(AuroraOwnerNumber)
        .where(
            AuroraOwnerNumber.organization_id == organization_id,
            col(AuroraOwnerNumber.is_active),
        )
        .order_by(col(AuroraOwnerNumber.id))
    )
    instances = await session.exec(
        select(WhatsAppInstance)
        .where(WhatsAppInstance.organization_id == organization_id)
        .order_by(col(WhatsAppInstance.id))
    )
    webhooks = await session.exec(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.organization_id == organization_id)
        .order_by(col(WebhookEndpoint.id))
    )
    config = OrgConfig(
        organization=org,
        ai=ai,
        hours=tuple(hours),
        closures=tuple(closures),
        services=tuple(services),
        owners=tuple(owners),
        instances=tuple(instances),
        webhooks=tuple(webhooks),
    )
    session.expunge_all()  # detached: shared across jobs, never flushed by anyone's session
    return config


@dataclass
class ConfigCache:
    """Per-process configurations by organization id, each at the version it was read at."""

    _configs: dict[int, OrgConfig] = field(default_factory=dict)
    loads: int = 0

    async def get(
        self, session: AsyncSession, organization_id: int, version: int | None = None
    ) -> OrgConfig:
        """The configuration at `version` (read with `current_version` when not given).

        Raises:
            UnknownOrganization: there is no such organization.
        """
        if version is None:
            version = await current_version(session, organization_id)
        cached = self._configs.get(organization_id)
        if cached is not None and cached.version >= version:
            return cached
        async with _Separate(session) as reader:
            config = await load_config(reader, organization_id)  # on the caller's connection
        self.loads += 1
        newest = self._configs.get(organization_id)
        if newest is None or newest.version <= config.version:
            self._configs[organization_id] = config
        return config

    def forget(self, organization_id: int | None = None) -> None:
        """Drop one organization's configuration (all with None)."""
        if organization_id is None:
            self._configs.clear()
        else:
            self._configs.pop(organization_id, None)


class _Separate:
    """A session of its own on the caller's connection, so that expunging the configuration's
    rows never detaches anything the caller's session holds, and loading it never waits for a
    second pooled connection (a process whose connections are all held by turns waiting on
    a reload would otherwise deadlock until the pool's timeout)."""

    def __init__(self, session: AsyncSession) -> None:
        self._caller = session
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> AsyncSession:
        connection = await self._caller.connection()
        self._session = AsyncSession(bind=connection, expire_on_commit=False)
        return self._session

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
