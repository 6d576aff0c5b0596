"""Cloud API templates: the 24-hour window, whether a proactive message goes out as free text
or as its kind's template, and the owners' notice when Meta refuses a template.

On the Cloud API free text reaches a contact only within 24 hours of the contact's latest
incoming message; outside it only an approved template does (`[[templates]]`). Evolution
numbers have no such window and always send the text. A message outside the window whose
kind has no template (or whose values do not fill it) is skipped with the reason recorded.
A message inside it still carries its template, so that a 131047 from Meta (its clock and
ours disagree, or the window closed meanwhile) is retried once as the template.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.models import (
    AuroraProactiveMessage,
    Conversation,
    Message,
    Organization,
    WhatsAppTemplate,
)
from zapvet.proactive.planning import TEMPLATE_ALERT, active_owners, insert_rows
from zapvet.proactive.wording import template_alert_text, template_alert_values

#: How long after a contact's latest message free text may still reach them.
WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Template:
    """A template ready to send: its name, language and body parameters in order."""

    name: str
    language: str
    parameters: list[str]

    def as_meta(self) -> dict[str, Any]:
        return {"name": self.name, "language": self.language, "parameters": self.parameters}

    @classmethod
    def from_meta(cls, meta: Any) -> Template | None:
        if not isinstance(meta, dict):
            return None
        return cls(str(meta["name"]), str(meta["language"]), [str(p) for p in meta["parameters"]])


@dataclass(frozen=True)
class Plan:
    """How a staged proactive message goes out: `template` (None: free text only), sent
    first (`outside`: outside the window) or kept for a 131047; or `skip` with the reason."""

    template: Template | None = None
    outside: bool = False
    skip: str | None = None

    def meta(self) -> dict[str, Any]:
        if self.template is None:
            return {}
        return {"template": self.template.as_meta(), "template_first": self.outside}


async def last_incoming(
    session: AsyncSession, organization_id: int, contact_id: int
) -> datetime | None:
    """When the contact last wrote to the organization (any of its conversations)."""
    found = await session.exec(
        select(func.max(Message.message_at))
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(
            Conversation.organization_id == organization_id,
            Conversation.contact_id == contact_id,
            Message.organization_id == organization_id,
            Message.direction == "incoming",
        )
    )
    return found.one()


def fill(template: WhatsAppTemplate, values: dict[str, str] | None) -> Template | str:
    """`template` with its parameters filled from `values`; or why it cannot be."""
    given = values or {}
    missing = [name for name in template.parameters if not given.get(name)]
    if missing:
        return f"template {template.name}: no value for {', '.join(missing)}"
    return Template(template.name, template.language, [given[n] for n in template.parameters])


async def plan_send(
    session: AsyncSession,
    message: AuroraProactiveMessage,
    contact_id: int,
    provider: str | None,
    now: datetime,
) -> Plan:
    """Free text, or the kind's template, for `message` to `contact_id` through `provider`."""
    if provider != "cloud":
        return Plan()
    row = (
        await session.exec(
            select(WhatsAppTemplate).where(
                WhatsAppTemplate.organization_id == message.organization_id,
                WhatsAppTemplate.kind == message.message_type,
            )
        )
    ).first()
    filled = fill(row, message.template_values) if row is not None else None
    last = await last_incoming(session, message.organization_id, contact_id)
    if last is not None and now - last < WINDOW:
        return Plan(template=filled if isinstance(filled, Template) else None)
    if filled is None:
        return Plan(
            skip=f"outside the 24-hour window and no [[templates]] for {message.message_type}"
        )
    if isinstance(filled, str):
        return Plan(skip=f"outside the 24-hour window; {filled}")
    return Plan(template=filled, outside=True)


def template_key(name: str, day: date, owner_id: int) -> str:
    return f"template:{name}:{day.isoformat()}:{owner_id}"


async def alert_template_error(
    session: AsyncSession, organization_id: int, kind: str, name: str, error: str, now: datetime
) -> list[int]:
    """Queue the owners' notice that Meta refused template `name`: once per template, owner
    and local day (its dedupe key); the new rows' ids."""
    org = await session.get(Organization, organization_id)
    if org is None:
        return []
    day = now.astimezone(ZoneInfo(org.timezone)).date()
    return await insert_rows(
        session,
        [
            {
                "organization_id": organization_id,
                "owner_number_id": owner.id,
                "message_type": TEMPLATE_ALERT,
                "content": template_alert_text(kind, name, error),
                "template_values": template_alert_values(name, error),
                "scheduled_for": now,
                "status": "pending",
                "dedupe_key": template_key(name, day, owner.id or 0),
            }
            for owner in await active_owners(session, organization_id)
        ],
    )


@dataclass(frozen=True)
class TemplateFailures:
    """Sends Meta refused as a template error (132000–132016) in a period."""

    count: int
    last_error: str | None = None
    last_at: datetime | None = None


_FAILURES = text(
    """
    SELECT count(*) OVER (), error, updated_at
      FROM messages
     WHERE organization_id = :org AND direction = 'outgoing'
       AND jsonb_typeof(meta) = 'object' AND meta->>'template_error' IS NOT NULL
       AND message_at >= :start AND message_at < :end
     ORDER BY updated_at DESC
     LIMIT 1
    """
)


async def template_failures(
    session: AsyncSession, organization_id: int, start: datetime, end: datetime
) -> TemplateFailures:
    """How many sends in [start, end) failed on a template error, and the latest one."""
    connection = await session.connection()
    row = (
        await connection.execute(_FAILURES, {"org": organization_id, "start": start, "end": end})
    ).first()
    if row is None:
        return TemplateFailures(0)
    return TemplateFailures(int(row[0]), row[1], row[2])
