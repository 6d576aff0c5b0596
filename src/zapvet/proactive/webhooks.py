"""Telling the owners that a webhook receiver answered 410 Gone (and was disabled).

The delivery actor calls `endpoint_gone` once per disabling; the dedupe key carries the
moment, so an endpoint enabled again and gone again is told again.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.models import Organization
from zapvet.proactive.planning import WEBHOOK, active_owners, insert_rows
from zapvet.proactive.wording import webhook_gone_text


async def endpoint_gone(
    session: AsyncSession, organization_id: int, endpoint_id: int, url: str, now: datetime
) -> list[int]:
    """Queue the owners' notice; the ids of the rows to send."""
    host = urlsplit(url).hostname or url
    organization = await session.get(Organization, organization_id)
    slug = organization.slug if organization is not None else str(organization_id)
    content = webhook_gone_text(endpoint_id, host, slug)
    key = f"webhook-gone:{endpoint_id}:{int(now.timestamp())}"
    rows: list[dict[str, object]] = [
        {
            "organization_id": organization_id,
            "owner_number_id": owner.id,
            "message_type": WEBHOOK,
            "content": content,
            "scheduled_for": now,
            "status": "pending",
            "dedupe_key": f"{key}:{owner.id}",
        }
        for owner in await active_owners(session, organization_id)
    ]
    return await insert_rows(session, rows)
