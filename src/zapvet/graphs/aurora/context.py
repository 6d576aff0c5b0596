"""Trusted identity of an owner turn: which owner number is talking, set by the router."""

from __future__ import annotations

from dataclasses import dataclass


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
