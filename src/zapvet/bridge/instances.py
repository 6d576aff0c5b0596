"""Which instance a webhook is for, answered from memory and never from a stale memory.

The bridge keeps (provider, instance key) → organization, and each organization's
configuration (instances with their tokens, AI settings, owner numbers) in a `ConfigCache`.
A webhook the cache accepts costs no statement to authenticate; its transaction then reads
`organizations.config_version` in its first statement (`statements.known_contact` or
`models.config.current_version`) and calls `Instances.confirm`, which reloads a newer
configuration and refuses, before anything is committed, a token or instance that no longer
matches. A webhook the cache refuses is checked against the database before it is refused,
so a token rotated by `zapvet org apply` works on the very next webhook either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.errors import PermanentError
from zapvet.models.config import ConfigCache, OrgConfig, UnknownOrganization
from zapvet.models.whatsapp import WhatsAppInstance

#: Does this instance accept the webhook's credentials (token, signature)?
Accepts = Callable[[WhatsAppInstance], bool]

_ORGANIZATION_OF = text(
    "SELECT organization_id FROM whatsapp_instances"
    " WHERE provider = :provider AND instance = :key AND is_active"
)


class Refused(PermanentError):
    """The instance is unknown or inactive (`unknown`), or refuses the credentials."""

    def __init__(self, key: str, *, unknown: bool) -> None:
        super().__init__(key)
        self.key = key
        self.unknown = unknown


@dataclass(frozen=True)
class Admitted:
    """An instance that accepted a webhook, with its organization's configuration."""

    config: OrgConfig
    instance: WhatsAppInstance


def _active(config: OrgConfig, provider: str, key: str) -> WhatsAppInstance | None:
    for row in config.instances:
        if row.provider == provider and row.instance == key and row.is_active:
            return row
    return None


@dataclass
class Instances:
    """Per-process: instance keys to organizations, and their configurations."""

    configs: ConfigCache = field(default_factory=ConfigCache)
    _organizations: dict[tuple[str, str], int] = field(default_factory=dict)

    async def admit(
        self, session: AsyncSession, provider: str, key: str, accepts: Accepts
    ) -> Admitted:
        """The instance `key` if it accepts the credentials: from memory when it does,
        from the database before saying no.

        Raises:
            Refused: the instance is unknown, inactive, or refuses the credentials.
        """
        organization_id = self._organizations.get((provider, key))
        if organization_id is not None:
            config = await self.configs.get(session, organization_id, version=0)
            instance = _active(config, provider, key)
            if instance is not None and accepts(instance):
                return Admitted(config, instance)
        return await self._fresh(session, provider, key, accepts)

    async def confirm(
        self, session: AsyncSession, admitted: Admitted, version: int, accepts: Accepts
    ) -> Admitted:
        """`admitted` again at configuration `version`, read inside the webhook's transaction.

        Raises:
            Refused: the configuration changed and no longer accepts the webhook.
        """
        if version <= admitted.config.version:
            return admitted
        provider, key = admitted.instance.provider, admitted.instance.instance
        config = await self.configs.get(session, admitted.config.organization_id, version)
        instance = _active(config, provider, key)
        if instance is None:
            self._organizations.pop((provider, key), None)
            raise Refused(key, unknown=True)
        if not accepts(instance):
            raise Refused(key, unknown=False)
        return Admitted(config, instance)

    async def _fresh(
        self, session: AsyncSession, provider: str, key: str, accepts: Accepts
    ) -> Admitted:
        found = (
            await (await session.connection()).execute(
                _ORGANIZATION_OF, {"provider": provider, "key": key}
            )
        ).scalar()
        if found is None:
            self._organizations.pop((provider, key), None)
            raise Refused(key, unknown=True)
        organization_id = int(found)
        try:
            config = await self.configs.get(session, organization_id)
        except UnknownOrganization:
            raise Refused(key, unknown=True) from None
        instance = _active(config, provider, key)
        if instance is None:  # deactivated between the two reads
            raise Refused(key, unknown=True)
        self._organizations[(provider, key)] = organization_id
        if not accepts(instance):
            raise Refused(key, unknown=False)
        return Admitted(config, instance)
