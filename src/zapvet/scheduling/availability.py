"""The availability engine: which start times are free for a service on a day (pure functions).

Times are aware datetimes. Opening hours are local wall-clock times in the organization's
timezone; a candidate start is built from the local date and wall time and converted to
UTC, and its end is start + duration in elapsed time, so a DST change inside a day neither
invents nor loses an hour of work. Wall times that do not exist (the spring-forward gap)
are skipped; ambiguous ones (the fall-back hour) take their first occurrence.

A resource can take a start when the peak number of its occupying appointments inside
[start, end) is below its capacity: the same rule the database trigger enforces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class Policy:
    """The organization's booking rules."""

    timezone: ZoneInfo
    weekly_hours: Mapping[int, Sequence[tuple[time, time]]]  # weekday (0 = Monday) → intervals
    closures: frozenset[date] = frozenset()
    slot_minutes: int = 30
    min_lead_minutes: int = 60
    horizon_days: int = 60


@dataclass(frozen=True)
class ResourceLoad:
    """A resource able to perform the service, with its capacity and occupied intervals."""

    resource_id: int
    capacity: int
    busy: tuple[Interval, ...] = ()


@dataclass(frozen=True)
class Slot:
    """A free start time and the resources (in preference order) that can take it."""

    start: datetime
    end: datetime
    resource_ids: tuple[int, ...] = field(default=())

    def local(self, zone: ZoneInfo) -> datetime:
        return self.start.astimezone(zone)


def local_moment(day: date, wall: time, zone: ZoneInfo) -> datetime | None:
    """The instant of wall time `wall` on `day` in `zone`; None if that wall time does not exist."""
    moment = datetime.combine(day, wall, tzinfo=zone)
    round_trip = moment.astimezone(UTC).astimezone(zone)
    if (round_trip.date(), round_trip.time()) != (day, wall):
        return None
    return moment.astimezone(UTC)


def peak_load(busy: Iterable[Interval], start: datetime, end: datetime) -> int:
    """Most intervals of `busy` overlapping at any one instant of [start, end)."""
    overlapping = [(s, e) for s, e in busy if s < end and e > start]
    points = [start, *(s for s, _ in overlapping if s > start)]
    return max((sum(1 for s, e in overlapping if s <= p < e) for p in points), default=0)


def is_open_day(policy: Policy, day: date) -> bool:
    return day not in policy.closures and bool(policy.weekly_hours.get(day.weekday()))


def bookable_window(policy: Policy, now: datetime) -> tuple[datetime, date]:
    """The earliest bookable instant and the last bookable local day."""
    earliest = now + timedelta(minutes=policy.min_lead_minutes)
    last_day = now.astimezone(policy.timezone).date() + timedelta(days=policy.horizon_days)
    return earliest, last_day


def free_slots(
    policy: Policy,
    day: date,
    duration_minutes: int,
    resources: Sequence[ResourceLoad],
    now: datetime,
) -> list[Slot]:
    """Every free start on `day` (local) for a service of `duration_minutes`, in time order."""
    earliest, last_day = bookable_window(policy, now)
    if not is_open_day(policy, day) or day > last_day or not resources:
        return []
    duration = timedelta(minutes=duration_minutes)
    step = timedelta(minutes=policy.slot_minutes)
    slots: list[Slot] = []
    for opens, closes in sorted(policy.weekly_hours[day.weekday()]):
        close = local_moment(day, closes, policy.timezone) or datetime.combine(
            day, closes, tzinfo=policy.timezone
        ).astimezone(UTC)
        wall = datetime.combine(day, opens)
        while wall.date() == day and wall.time() < closes:
            start = local_moment(day, wall.time(), policy.timezone)
            wall += step
            if start is None or start < earliest:
                continue
            end = start + duration
            if end > close:
                break
            free = tuple(
                r.resource_id for r in resources if peak_load(r.busy, start, end) < r.capacity
            )
            if free:
                slots.append(Slot(start=start, end=end, resource_ids=free))
    return slots


def nearest_slots(slots: Sequence[Slot], target: datetime, count: int = 3) -> list[Slot]:
    """The `count` slots closest to `target`, returned in time order."""
    closest = sorted(slots, key=lambda s: (abs(s.start - target), s.start))[:count]
    return sorted(closest, key=lambda s: s.start)


def period_of(moment: time) -> str:
    """The part of the day customers talk about: manhã, tarde or noite."""
    if moment < time(12):
        return "manhã"
    if moment < time(18):
        return "tarde"
    return "noite"


def group_by_period(slots: Iterable[Slot], zone: ZoneInfo) -> dict[str, list[str]]:
    """{"manhã": ["09:00", …], "tarde": […]}, omitting empty periods."""
    grouped: dict[str, list[str]] = {}
    for slot in slots:
        local = slot.local(zone)
        grouped.setdefault(period_of(local.time()), []).append(f"{local:%H:%M}")
    return grouped
