"""The AI's replies after they left: delivery statuses, and failures after acceptance.

A reply the gateway accepted can still fail on WhatsApp's side (Evolution `messages.update`
ERROR, the Cloud API's `statuses` "failed": the 24-hour window, a number that cannot receive,
spam limits). Nothing retries it and the send looked fine, so `zapvet stats` and GET /stats
list those figures and the latest failures with the provider's error, next to the queue's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

#: How many of the day's failed replies are listed.
LATEST = 5

_BY_STATUS = text(
    "SELECT status, count(*) FROM messages"
    " WHERE direction = 'outgoing' AND sent_by_ai AND created_at > :day GROUP BY 1"
)
_FAILED = text(
    "SELECT conversation_id, error, updated_at, whatsapp_message_id IS NOT NULL"
    " FROM messages WHERE direction = 'outgoing' AND sent_by_ai AND status = 'failed'"
    " AND updated_at > :day ORDER BY updated_at DESC"
)


@dataclass(frozen=True)
class Failure:
    conversation_id: int
    error: str
    at: str
    #: The gateway had accepted it (it failed afterwards) rather than refused it.
    after_acceptance: bool


@dataclass(frozen=True)
class ReplyStats:
    """The last 24 hours of the AI's replies."""

    by_status: dict[str, int]
    failed_after_acceptance_last_hour: int
    failed_after_acceptance_last_day: int
    latest_failures: list[Failure] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "last_day": self.by_status,
            "failed_after_acceptance_last_hour": self.failed_after_acceptance_last_hour,
            "failed_after_acceptance_last_day": self.failed_after_acceptance_last_day,
            "latest_failures": [asdict(failure) for failure in self.latest_failures],
        }


async def reply_stats(session: AsyncSession, now: datetime) -> ReplyStats:
    """The AI's replies of the last day by status, and those that failed after acceptance."""
    day, hour = now - timedelta(days=1), now - timedelta(hours=1)
    connection = await session.connection()
    by_status = {
        str(status): int(total)
        for status, total in await connection.execute(_BY_STATUS, {"day": day})
    }
    failed = (await connection.execute(_FAILED, {"day": day})).all()
    accepted = [row for row in failed if row[3]]
    return ReplyStats(
        by_status=by_status,
        failed_after_acceptance_last_hour=sum(1 for row in accepted if row[2] > hour),
        failed_after_acceptance_last_day=len(accepted),
        latest_failures=[
            Failure(int(conversation), error or "", at.isoformat(timespec="seconds"), bool(ok))
            for conversation, error, at, ok in failed[:LATEST]
        ],
    )
