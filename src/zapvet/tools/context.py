"""Trusted identity of a turn (`Runtime[Context]`), set by the router and never by the model."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class ClientContext:
    """Who is talking, and where. Plain ids only, so it serialises for LangGraph Studio.

    Tools refuse to act while any id is 0 (no context given).
    """

    organization_id: int = 0
    contact_id: int = 0
    conversation_id: int = 0

    @property
    def complete(self) -> bool:
        return bool(self.organization_id and self.contact_id and self.conversation_id)


@dataclass(kw_only=True)
class AuroraContext:
    """Plain ids only (LangGraph Studio serialises it). Tools refuse while any id is 0, and
    check on every call that the owner number is still active in this organization."""

    organization_id: int = 0
    owner_number_id: int = 0
    contact_id: int = 0
    conversation_id: int = 0

    @property
    def complete(self) -> bool:
        return bool(self.organization_id and self.owner_number_id and self.conversation_id)
