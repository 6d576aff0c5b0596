"""The agenda as a read-only iCalendar feed (RFC 5545), for Google Calendar or a phone.

`GET /calendar/{token}.ics` (served by the bridge through `runtime.py`) answers with the
organization's appointments, or one resource's, from `PAST` ago to `AHEAD` from now. A feed
is found by the SHA-256 of its token (the token itself is never stored: `rotate` shows it
once, and rotating again replaces it). Events carry the service, the pet and the client's
first name only, their times in UTC (`Z`), and the organization's timezone as the calendar's
(`X-WR-TIMEZONE`), so every client shows them at the right local time. Cancelled
appointments are left out: a calendar refreshing the feed drops them.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet import db
from zapvet.models import (
    Appointment,
    CalendarFeed,
    Contact,
    Organization,
    Pet,
    Resource,
    Service,
)

PAST = timedelta(days=30)
AHEAD = timedelta(days=365)
#: What calendar clients are asked to wait between two fetches.
REFRESH = "PT15M"
_STATUS = {
    "scheduled": "agendado",
    "confirmed": "confirmado",
    "completed": "concluído",
    "no_show": "não compareceu",
}


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Rotated:
    token: str
    resource: str | None


async def rotate(
    session: AsyncSession, organization_id: int, resource: str | None = None
) -> Rotated | None:
    """A new feed token for the organization (or its resource named `resource`), replacing
    the previous one; None if there is no such resource. The caller commits."""
    resource_id = None
    if resource is not None:
        resource_id = (
            await session.exec(
                select(Resource.id).where(
                    Resource.organization_id == organization_id, Resource.name == resource
                )
            )
        ).first()
        if resource_id is None:
            return None
    scope = (
        col(CalendarFeed.resource_id).is_(None)
        if resource_id is None
        else col(CalendarFeed.resource_id) == resource_id
    )
    await session.exec(
        delete(CalendarFeed).where(col(CalendarFeed.organization_id) == organization_id, scope)
    )
    token = secrets.token_urlsafe(32)
    session.add(
        CalendarFeed(
            organization_id=organization_id,
            resource_id=resource_id,
            token_sha256=token_digest(token),
        )
    )
    return Rotated(token, resource)


async def feeds(session: AsyncSession, organization_id: int) -> list[tuple[str | None, datetime]]:
    """The organization's feeds: the resource's name (None: the whole agenda), when made."""
    rows = await db.rows(
        session,
        sa_select(col(Resource.name), col(CalendarFeed.created_at))
        .select_from(CalendarFeed)
        .outerjoin(
            Resource,
            (col(Resource.id) == col(CalendarFeed.resource_id))
            & (col(Resource.organization_id) == col(CalendarFeed.organization_id)),
        )
        .where(col(CalendarFeed.organization_id) == organization_id)
        .order_by(col(Resource.name).nulls_first()),
    )
    return [(name, created) for name, created in rows]


async def feed_ics(session: AsyncSession, token: str, now: datetime) -> bytes | None:
    """The feed's calendar, or None for an unknown token."""
    feed = (
        await session.exec(
            select(CalendarFeed).where(CalendarFeed.token_sha256 == token_digest(token))
        )
    ).first()
    if feed is None:
        return None
    org = await session.get(Organization, feed.organization_id)
    assert org is not None  # the feed's foreign key
    query = (
        sa_select(
            Appointment,
            col(Service.name),
            col(Resource.name),
            col(Pet.name),
            col(Contact.name),
        )
        .join(
            Service,
            (col(Service.id) == col(Appointment.service_id))
            & (col(Service.organization_id) == col(Appointment.organization_id)),
        )
        .join(
            Resource,
            (col(Resource.id) == col(Appointment.resource_id))
            & (col(Resource.organization_id) == col(Appointment.organization_id)),
        )
        .join(
            Contact,
            (col(Contact.id) == col(Appointment.contact_id))
            & (col(Contact.organization_id) == col(Appointment.organization_id)),
        )
        .outerjoin(
            Pet,
            (col(Pet.id) == col(Appointment.pet_id))
            & (col(Pet.organization_id) == col(Appointment.organization_id)),
        )
        .where(
            col(Appointment.organization_id) == feed.organization_id,
            col(Appointment.status) != "cancelled",
            col(Appointment.ends_at) > now - PAST,
            col(Appointment.starts_at) < now + AHEAD,
        )
        .order_by(col(Appointment.starts_at), col(Appointment.id))
    )
    if feed.resource_id is not None:
        query = query.where(col(Appointment.resource_id) == feed.resource_id)
    rows = await db.rows(session, query)
    name = org.name
    if feed.resource_id is not None and rows:
        name = f"{org.name} · {rows[0][2]}"
    elif feed.resource_id is not None:
        resource = await session.get(Resource, feed.resource_id)
        name = f"{org.name} · {resource.name if resource else ''}"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//zapvet//agenda//PT-BR",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{escape(name)}",
        f"X-WR-TIMEZONE:{org.timezone}",
        f"REFRESH-INTERVAL;VALUE=DURATION:{REFRESH}",
        f"X-PUBLISHED-TTL:{REFRESH}",
    ]
    for appointment, service, resource_name, pet, client in rows:
        who = " ".join(part for part in (pet, _first_name(client)) if part)
        summary = f"{service} · {who}" if who else service
        details = f"{resource_name} · {_STATUS.get(appointment.status, appointment.status)}"
        lines += [
            "BEGIN:VEVENT",
            f"UID:appointment-{appointment.id}-{org.slug}@zapvet",
            f"DTSTAMP:{_utc(appointment.updated_at)}",
            f"LAST-MODIFIED:{_utc(appointment.updated_at)}",
            f"DTSTART:{_utc(appointment.starts_at)}",
            f"DTEND:{_utc(appointment.ends_at)}",
            f"SUMMARY:{escape(summary)}",
            f"DESCRIPTION:{escape(details)}",
            "STATUS:CONFIRMED",
            "TRANSP:OPAQUE",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines).encode()


def _first_name(name: str | None) -> str | None:
    """The client's first name, in parentheses (the feed never shows a full name)."""
    first = (name or "").split()
    return f"({first[0]})" if first else None


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def escape(value: str) -> str:
    """A TEXT value (RFC 5545 §3.3.11): backslash, semicolon, comma and newlines escaped;
    other control characters dropped."""
    escaped = (
        value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\r\n", "\n")
    )
    escaped = escaped.replace("\n", "\\n")
    return "".join(ch for ch in escaped if ch >= " " or ch == "\t")


def fold(line: str, limit: int = 75) -> str:
    """A content line folded at `limit` octets (RFC 5545 §3.1), never inside a UTF-8
    character: each continuation starts with one space."""
    parts: list[str] = []
    current, size = "", 0
    for ch in line:
        width = len(ch.encode())
        if size + width > limit:
            parts.append(current)
            current, size = " ", 1  # the continuation's leading space counts
        current += ch
        size += width
    parts.append(current)
    return "\r\n".join(parts)
