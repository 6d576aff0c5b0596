"""Trusted identity of a client turn, set by the caller and never by the model."""

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
