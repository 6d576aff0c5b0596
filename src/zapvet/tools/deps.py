"""What agent tools need from the process: database sessions, a clock (frozen in tests) and the
process's cache of organization configurations."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.clock import Clock, system_clock
from zapvet.models.config import ConfigCache


@dataclass(frozen=True)
class ToolDeps:
    """Built once per process by the entrypoint and closed over by the graph's tools."""

    sessions: async_sessionmaker[AsyncSession]
    clock: Clock = system_clock
    #: Organizations' configurations, checked against their version on every use.
    configs: ConfigCache = field(default_factory=ConfigCache)
    #: ZAPVET_TRANSCRIBE_MODEL: what voice notes of an organization without its own
    #: `[ai] transcribe_model` are transcribed, and so priced, with.
    transcribe_model: str = "gpt-4o-mini-transcribe"
