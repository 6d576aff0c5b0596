"""What agent tools need from the process: database sessions and a clock (frozen in tests)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.clock import Clock, system_clock


@dataclass(frozen=True)
class ToolDeps:
    """Built once per process by the entrypoint and closed over by the graph's tools."""

    sessions: async_sessionmaker[AsyncSession]
    clock: Clock = system_clock
