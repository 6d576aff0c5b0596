"""How `zapvet webhooks list` and `deliveries` print: lines for people, JSON for scripts;
times in the organization's timezone (ISO 8601 with its offset in JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from zapvet.webhooks.overview import Delivery, Endpoint


def shown(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def iso(moment: datetime | None, timezone: str) -> str | None:
    return None if moment is None else moment.astimezone(ZoneInfo(timezone)).isoformat()


def endpoint_json(endpoint: Endpoint, timezone: str) -> dict[str, Any]:
    last = endpoint.last
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "enabled": endpoint.enabled,
        "sending": endpoint.sending,
        "allow_private_targets": endpoint.allow_private_targets,
        "disabled_at": iso(endpoint.disabled_at, timezone),
        "disabled_reason": endpoint.disabled_reason,
        "waiting": endpoint.waiting,
        "dead": endpoint.dead,
        "delivered_last_24h": endpoint.delivered_recently,
        "last_attempt": None
        if last is None
        else {
            "delivery_id": last.delivery_id,
            "status": last.status,
            "status_code": last.status_code,
            "at": iso(last.at, timezone),
        },
    }


def endpoint_lines(endpoint: Endpoint, slug: str, timezone: str) -> list[str]:
    if endpoint.disabled_at is not None:
        state = (
            f"DISABLED since {shown(endpoint.disabled_at, timezone)}: "
            f"{endpoint.disabled_reason or 'the receiver answered 410 Gone'}; once it is "
            f"back: zapvet webhooks enable --org {slug} {endpoint.id}"
        )
    elif not endpoint.enabled:
        state = "off (enabled = false in the organization file, or no longer in it)"
    else:
        state = "enabled"
    if endpoint.last is None:
        last = "no attempt yet"
    else:
        answer = endpoint.last.status_code or "no answer"
        last = (
            f"last attempt {shown(endpoint.last.at, timezone)}: {answer} "
            f"(delivery {endpoint.last.delivery_id}, {endpoint.last.status})"
        )
    return [
        f"#{endpoint.id}  {endpoint.url}",
        f"    {state}",
        f"    events: {', '.join(endpoint.events)}",
        f"    waiting {endpoint.waiting} · dead {endpoint.dead} · "
        f"delivered last 24 h {endpoint.delivered_recently} · {last}",
    ]


def delivery_json(delivery: Delivery, timezone: str) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "event_type": delivery.event_type,
        "event_id": delivery.event_id,
        "resource": delivery.resource,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "next_attempt_at": iso(delivery.next_attempt_at, timezone),
        "delivered_at": iso(delivery.delivered_at, timezone),
        "created_at": iso(delivery.created_at, timezone),
    }


def delivery_lines(delivery: Delivery, timezone: str) -> list[str]:
    if delivery.delivered_at is not None:
        when = f"delivered {shown(delivery.delivered_at, timezone)}"
    elif delivery.next_attempt_at is not None:
        verb = "lease ends" if delivery.status == "queued" else "next attempt"
        when = f"{verb} {shown(delivery.next_attempt_at, timezone)}"
    else:
        when = "no more attempts (requeue it to try again)"
    code = delivery.last_status_code or "-"
    lines = [
        f"{delivery.id:>6}  {delivery.event_type:<24} {delivery.status:<9} "
        f"{delivery.attempts:>8} {code!s:>5}  {delivery.resource}  {delivery.event_id}",
        f"{'':>8}endpoint #{delivery.endpoint_id} · {when}",
    ]
    if delivery.last_error:
        lines.append(f"{'':>8}error: {delivery.last_error}")
    return lines
