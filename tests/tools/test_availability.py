"""The pure availability engine: grid, hours, lead time, horizon, capacity and DST."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from zapvet.scheduling.availability import (
    Interval,
    Policy,
    ResourceLoad,
    Slot,
    bookable_window,
    free_slots,
    group_by_period,
    is_open_day,
    local_moment,
    nearest_slots,
    peak_load,
)

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 25, 14, 0, tzinfo=SAO_PAULO)  # a Wednesday
THURSDAY = date(2026, 11, 26)
SATURDAY = date(2026, 11, 28)
SUNDAY = date(2026, 11, 29)
WEEKDAY = [(time(8), time(12)), (time(13), time(18))]
PETFELIZ_HOURS = {**dict.fromkeys(range(5), WEEKDAY), 5: [(time(8), time(13))]}


def policy(**overrides: Any) -> Policy:
    """Pet Feliz's rules (examples/petfeliz.toml), with `overrides`."""
    return replace(Policy(timezone=SAO_PAULO, weekly_hours=PETFELIZ_HOURS), **overrides)


def at(day: date, hour: int, minute: int = 0, zone: ZoneInfo = SAO_PAULO) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)


def walls(slots: Sequence[Slot], zone: ZoneInfo = SAO_PAULO) -> list[str]:
    return [f"{slot.local(zone):%H:%M}" for slot in slots]


def one(capacity: int = 1, busy: Sequence[Interval] = (), resource_id: int = 1) -> ResourceLoad:
    return ResourceLoad(resource_id=resource_id, capacity=capacity, busy=tuple(busy))


def grid(start: str, stop: str, minutes: int = 30) -> list[str]:
    """Wall times from `start` up to and including `stop`, every `minutes`."""
    moment = datetime.combine(THURSDAY, time.fromisoformat(start))
    last = datetime.combine(THURSDAY, time.fromisoformat(stop))
    out = []
    while moment <= last:
        out.append(f"{moment:%H:%M}")
        moment += timedelta(minutes=minutes)
    return out


# -- hours, grid, lead time, horizon --------------------------------------------------------


def test_free_slots_follow_the_grid_from_each_interval_start() -> None:
    odd_hours = {3: [(time(8, 15), time(10)), (time(13, 10), time(14))]}
    slots = free_slots(policy(weekly_hours=odd_hours), THURSDAY, 30, [one()], NOW)
    assert walls(slots) == ["08:15", "08:45", "09:15", "13:10"]


def test_free_slots_never_end_a_sixty_minute_service_after_closing() -> None:
    slots = free_slots(policy(), THURSDAY, 60, [one()], NOW)
    assert walls(slots) == grid("08:00", "11:00") + grid("13:00", "17:00")
    assert all(slot.end - slot.start == timedelta(minutes=60) for slot in slots)


def test_free_slots_respect_the_lunch_gap() -> None:
    slots = free_slots(policy(), THURSDAY, 30, [one()], NOW)
    assert walls(slots) == grid("08:00", "11:30") + grid("13:00", "17:30")
    assert not {"12:00", "12:30"} & set(walls(slots))


def test_free_slots_on_saturday_use_saturday_hours() -> None:
    slots = free_slots(policy(), SATURDAY, 45, [one()], NOW)
    assert walls(slots) == grid("08:00", "12:00")


def test_free_slots_are_empty_on_a_closure() -> None:
    closed = policy(closures=frozenset({THURSDAY}))
    assert free_slots(closed, THURSDAY, 30, [one()], NOW) == []
    assert free_slots(closed, date(2026, 11, 27), 30, [one()], NOW) != []


def test_free_slots_are_empty_on_a_closed_weekday() -> None:
    assert free_slots(policy(), SUNDAY, 30, [one()], NOW) == []


def test_free_slots_are_empty_without_resources() -> None:
    assert free_slots(policy(), THURSDAY, 30, [], NOW) == []


def test_is_open_day_needs_hours_and_no_closure() -> None:
    closed_thursday = policy(closures=frozenset({THURSDAY}))
    assert is_open_day(policy(), THURSDAY)
    assert is_open_day(policy(), SATURDAY)
    assert not is_open_day(policy(), SUNDAY)
    assert not is_open_day(closed_thursday, THURSDAY)
    assert not is_open_day(policy(weekly_hours={3: []}), THURSDAY)


def test_free_slots_hide_starts_inside_the_minimum_lead_time() -> None:
    today = NOW.date()
    assert walls(free_slots(policy(), today, 30, [one()], NOW)) == grid("15:00", "17:30")
    later = policy(min_lead_minutes=90)
    assert walls(free_slots(later, today, 30, [one()], NOW)) == grid("15:30", "17:30")
    none = policy(min_lead_minutes=0)
    assert walls(free_slots(none, today, 30, [one()], NOW)) == grid("14:00", "17:30")


def test_free_slots_hide_past_days() -> None:
    assert free_slots(policy(), date(2026, 11, 24), 30, [one()], NOW) == []


def test_free_slots_hide_days_beyond_the_horizon() -> None:
    short = policy(horizon_days=5)
    assert free_slots(short, date(2026, 11, 30), 30, [one()], NOW) != []
    assert free_slots(short, date(2026, 12, 1), 30, [one()], NOW) == []


def test_bookable_window_is_now_plus_lead_until_the_local_horizon_day() -> None:
    late_evening = datetime(2026, 11, 25, 23, 30, tzinfo=SAO_PAULO)  # already the 26th in UTC
    earliest, last_day = bookable_window(policy(horizon_days=60), late_evening)
    assert earliest == late_evening + timedelta(hours=1)
    assert last_day == date(2027, 1, 24)


def test_free_slots_list_every_resource_with_room_in_preference_order() -> None:
    nine = at(THURSDAY, 9)
    busy_first = one(busy=[(nine, nine + timedelta(minutes=30))], resource_id=7)
    free_second = one(resource_id=3)
    slots = {s.start: s for s in free_slots(policy(), THURSDAY, 30, [busy_first, free_second], NOW)}
    assert slots[nine].resource_ids == (3,)
    assert slots[nine + timedelta(minutes=30)].resource_ids == (7, 3)


def test_free_slots_with_capacity_two_refuse_only_where_two_overlap() -> None:
    nine = at(THURSDAY, 9)
    hour = timedelta(hours=1)
    half = timedelta(minutes=30)
    busy = [(nine, nine + hour), (nine + half, nine + half + hour)]  # 9:00-10:00, 9:30-10:30
    starts = walls(free_slots(policy(), THURSDAY, 30, [one(2, busy)], NOW))
    assert "09:00" in starts  # only 9:00-10:00 inside [9:00, 9:30)
    assert "09:30" not in starts  # both
    assert "10:00" in starts  # the first ended at 10:00
    sixty = walls(free_slots(policy(), THURSDAY, 60, [one(2, busy)], NOW))
    assert {"09:00", "09:30"}.isdisjoint(sixty)  # each covers 9:30-10:00
    assert {"08:00", "08:30", "10:00"} <= set(sixty)


def test_free_slots_ignore_busy_intervals_that_only_touch() -> None:
    nine = at(THURSDAY, 9)
    busy = [(nine - timedelta(minutes=30), nine), (nine + timedelta(minutes=30), at(THURSDAY, 10))]
    assert "09:00" in walls(free_slots(policy(), THURSDAY, 30, [one(1, busy)], NOW))


# -- peak_load ------------------------------------------------------------------------------


def test_peak_load_counts_simultaneous_overlaps_not_all_overlaps() -> None:
    nine = at(THURSDAY, 9)
    m = timedelta(minutes=1)
    chain = [(nine, nine + 30 * m), (nine + 30 * m, nine + 60 * m), (nine + 60 * m, nine + 90 * m)]
    assert peak_load(chain, nine, nine + 90 * m) == 1
    stacked = [*chain, (nine + 10 * m, nine + 70 * m)]
    assert peak_load(stacked, nine, nine + 90 * m) == 2
    assert peak_load(stacked, nine + 90 * m, nine + 120 * m) == 0
    assert peak_load([], nine, nine + m) == 0


def test_peak_load_counts_an_interval_already_running_at_start() -> None:
    nine = at(THURSDAY, 9)
    running = [(nine - timedelta(hours=1), nine + timedelta(minutes=1))]
    assert peak_load(running, nine, nine + timedelta(minutes=30)) == 1


# -- local_moment ---------------------------------------------------------------------------


def test_local_moment_returns_aware_utc() -> None:
    moment = local_moment(THURSDAY, time(10), SAO_PAULO)
    assert moment == datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
    assert moment is not None and moment.tzinfo is UTC


def test_local_moment_is_none_for_a_wall_time_that_never_happened() -> None:
    assert local_moment(date(2026, 3, 8), time(2, 30), NEW_YORK) is None
    assert local_moment(date(2018, 11, 4), time(0), SAO_PAULO) is None
    assert local_moment(date(2018, 11, 4), time(1), SAO_PAULO) == datetime(
        2018, 11, 4, 3, 0, tzinfo=UTC
    )


def test_local_moment_takes_the_first_occurrence_of_an_ambiguous_wall_time() -> None:
    assert local_moment(date(2026, 11, 1), time(1, 30), NEW_YORK) == datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC
    )  # 01:30 EDT, not 01:30 EST (06:30 UTC)


# -- DST --------------------------------------------------------------------------------------


def assert_dst_safe(slots: Sequence[Slot], zone: ZoneInfo, day: date, minutes: int) -> None:
    starts = [slot.start for slot in slots]
    assert starts == sorted(set(starts)), "a start offered twice or out of order"
    assert len({f"{s.local(zone):%H:%M}" for s in slots}) == len(slots), "a wall time twice"
    for slot in slots:
        assert slot.start.tzinfo is UTC and slot.end.tzinfo is UTC
        assert slot.end - slot.start == timedelta(minutes=minutes)  # real elapsed time
        local = slot.local(zone)
        assert local.date() == day
        assert local.minute % 30 == 0


def test_free_slots_skip_the_spring_forward_gap_in_new_york() -> None:
    day = date(2026, 3, 8)  # 02:00 EST became 03:00 EDT
    night = policy(timezone=NEW_YORK, weekly_hours={6: [(time(0), time(5))]}, min_lead_minutes=0)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    slots = free_slots(night, day, 30, [one()], now)
    assert walls(slots, NEW_YORK) == ["00:00", "00:30", "01:00", "01:30", *grid("03:00", "04:30")]
    assert_dst_safe(slots, NEW_YORK, day, 30)
    hour = free_slots(night, day, 60, [one()], now)
    crossing = next(s for s in hour if f"{s.local(NEW_YORK):%H:%M}" == "01:30")
    assert f"{crossing.end.astimezone(NEW_YORK):%H:%M}" == "03:30"
    assert walls(hour, NEW_YORK)[-1] == "04:00"  # 04:30 EDT + 60 min ends after 05:00 EDT
    assert_dst_safe(hour, NEW_YORK, day, 60)


def test_free_slots_offer_an_ambiguous_wall_time_once_in_new_york() -> None:
    day = date(2026, 11, 1)  # 02:00 EDT became 01:00 EST
    night = policy(timezone=NEW_YORK, weekly_hours={6: [(time(0), time(3))]}, min_lead_minutes=0)
    now = datetime(2026, 10, 25, tzinfo=UTC)
    slots = free_slots(night, day, 30, [one()], now)
    assert walls(slots, NEW_YORK) == grid("00:00", "02:30")
    assert [s.start.hour for s in slots if s.local(NEW_YORK).hour == 1] == [5, 5]  # EDT only
    assert slots[-1].end == local_moment(day, time(3), NEW_YORK)
    assert_dst_safe(slots, NEW_YORK, day, 30)
    # A busy first 01:30 (EDT) does not make the engine fall back to the second one.
    first = (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 1, 6, 0, tzinfo=UTC))
    busy = free_slots(night, day, 30, [one(1, [first])], now)
    assert "01:30" not in walls(busy, NEW_YORK)
    assert_dst_safe(busy, NEW_YORK, day, 30)


def test_free_slots_skip_the_missing_midnight_of_old_brazilian_dst() -> None:
    day = date(2018, 11, 4)  # 00:00 -03 became 01:00 -02
    night = policy(weekly_hours={6: [(time(0), time(2))]}, min_lead_minutes=0)
    now = datetime(2018, 11, 1, tzinfo=UTC)
    slots = free_slots(night, day, 30, [one()], now)
    assert walls(slots) == ["01:00", "01:30"]
    assert [s.start for s in slots] == [
        datetime(2018, 11, 4, 3, 0, tzinfo=UTC),
        datetime(2018, 11, 4, 3, 30, tzinfo=UTC),
    ]
    assert_dst_safe(slots, SAO_PAULO, day, 30)
    assert walls(free_slots(night, day, 60, [one()], now)) == ["01:00"]


# -- presenting slots -----------------------------------------------------------------------


def test_nearest_slots_returns_the_closest_in_time_order() -> None:
    slots = free_slots(policy(), THURSDAY, 30, [one()], NOW)
    # 11:30 and 13:00 are 45 min away; 11:00 and 13:30 tie at 75 min and the earlier wins.
    assert walls(nearest_slots(slots, at(THURSDAY, 12, 15))) == ["11:00", "11:30", "13:00"]
    assert walls(nearest_slots(slots, at(THURSDAY, 10), count=2)) == ["09:30", "10:00"]
    assert walls(nearest_slots(slots, at(THURSDAY, 10, 15), count=1)) == ["10:00"]  # tie: earlier
    assert nearest_slots([], at(THURSDAY, 10)) == []


def test_group_by_period_splits_morning_afternoon_and_evening() -> None:
    evening = policy(weekly_hours={3: [(time(11), time(12, 30)), (time(17, 30), time(19))]})
    grouped = group_by_period(free_slots(evening, THURSDAY, 30, [one()], NOW), SAO_PAULO)
    assert grouped == {
        "manhã": ["11:00", "11:30"],
        "tarde": ["12:00", "17:30"],
        "noite": ["18:00", "18:30"],
    }
    morning_only = policy(weekly_hours={3: [(time(8), time(9))]})
    assert group_by_period(free_slots(morning_only, THURSDAY, 30, [one()], NOW), SAO_PAULO) == {
        "manhã": ["08:00", "08:30"]
    }


# -- properties -----------------------------------------------------------------------------

FIVE = timedelta(minutes=5)
# Ordinary days, and days with a DST change in their zone (the old Brazilian DST included).
ZONE_DAYS = st.sampled_from(
    [
        (ZoneInfo("UTC"), date(2026, 11, 26)),
        (SAO_PAULO, date(2026, 11, 26)),
        (NEW_YORK, date(2026, 3, 8)),  # 02:00-02:59 never happens
        (NEW_YORK, date(2026, 11, 1)),  # 01:00-01:59 happens twice
        (SAO_PAULO, date(2018, 11, 4)),  # 00:00-00:59 never happens
        (SAO_PAULO, date(2019, 2, 16)),  # 23:00-23:59 happens twice
    ]
)
# Cut points (five-minute steps) biased towards the small hours and late evening, where the
# DST changes are.
CUTS = st.one_of(st.integers(0, 48), st.integers(0, 287), st.integers(264, 287))


@st.composite
def opening_hours(draw: st.DrawFn) -> list[tuple[time, time]]:
    """One to three disjoint intervals of a day, on the five-minute grid."""
    cuts = draw(st.lists(CUTS, min_size=2, max_size=6, unique=True))
    cuts = sorted(cuts)[: len(cuts) // 2 * 2]
    return [
        (time(*divmod(cuts[i] * 5, 60)), time(*divmod(cuts[i + 1] * 5, 60)))
        for i in range(0, len(cuts), 2)
    ]


def fits(busy: Sequence[Interval], capacity: int) -> bool:
    """No instant covered by more than `capacity` intervals (checked at every interval start)."""
    return all(sum(1 for s, e in busy if s <= p < e) <= capacity for p, _ in busy)


@st.composite
def resource_loads(draw: st.DrawFn, around: datetime) -> list[ResourceLoad]:
    """One to three resources whose busy intervals (five-minute grid) respect their capacity."""
    loads = []
    for resource_id in range(1, draw(st.integers(1, 3)) + 1):
        capacity = draw(st.integers(1, 3))
        busy: list[Interval] = []
        for offset, length in draw(
            st.lists(st.tuples(st.integers(-72, 360), st.integers(1, 48)), max_size=8)
        ):
            start = around + offset * FIVE
            if fits([*busy, (start, start + length * FIVE)], capacity):
                busy.append((start, start + length * FIVE))
        loads.append(ResourceLoad(resource_id=resource_id, capacity=capacity, busy=tuple(busy)))
    return loads


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Policy, date, int, list[ResourceLoad], datetime]:
    zone, day = draw(ZONE_DAYS)
    midnight = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    rules = Policy(
        timezone=zone,
        weekly_hours={day.weekday(): draw(opening_hours())},
        closures=frozenset({day}) if draw(st.integers(0, 9)) == 0 else frozenset(),
        slot_minutes=draw(st.sampled_from([5, 10, 15, 20, 30, 45, 60, 90])),
        min_lead_minutes=draw(st.integers(0, 48)) * 5,
        horizon_days=draw(st.integers(0, 3)),
    )
    duration = draw(st.integers(1, 24)) * 5
    now = midnight + draw(st.integers(-288, 144)) * FIVE
    return rules, day, duration, draw(resource_loads(midnight)), now


def exists(day: date, wall: time, zone: ZoneInfo) -> bool:
    """False inside a spring-forward gap, where fold 0 has the smaller offset than fold 1."""
    early = datetime.combine(day, wall, tzinfo=zone).utcoffset()
    late = datetime.combine(day, wall, tzinfo=zone).replace(fold=1).utcoffset()
    assert early is not None and late is not None
    return early >= late


def expected_starts(
    rules: Policy, day: date, duration: int, resources: Sequence[ResourceLoad], now: datetime
) -> dict[datetime, tuple[int, ...]]:
    """A slower restatement of the rules: every grid start that fits, with its free resources."""
    zone = rules.timezone
    if day in rules.closures or day > now.astimezone(zone).date() + timedelta(
        days=rules.horizon_days
    ):
        return {}
    found: dict[datetime, tuple[int, ...]] = {}
    for opens, closes in rules.weekly_hours.get(day.weekday(), []):
        close = datetime.combine(day, closes, tzinfo=zone).astimezone(UTC)
        minutes = opens.hour * 60 + opens.minute
        while minutes < closes.hour * 60 + closes.minute:
            wall = time(*divmod(minutes, 60))
            minutes += rules.slot_minutes
            if not exists(day, wall, zone):
                continue
            start = datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)  # fold 0: first
            end = start + timedelta(minutes=duration)
            if start < now + timedelta(minutes=rules.min_lead_minutes) or end > close:
                continue
            free = tuple(
                r.resource_id for r in resources if brute_peak(r.busy, start, end) < r.capacity
            )
            if free:
                found[start] = free
    return found


def brute_peak(busy: Sequence[Interval], start: datetime, end: datetime) -> int:
    """The most intervals covering one five-minute tick of [start, end)."""
    peak, tick = 0, start
    while tick < end:
        peak = max(peak, sum(1 for s, e in busy if s <= tick < e))
        tick += FIVE
    return peak


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_free_slots_offer_only_starts_every_listed_resource_can_take(
    scenario: tuple[Policy, date, int, list[ResourceLoad], datetime],
) -> None:
    rules, day, duration, resources, now = scenario
    slots = free_slots(rules, day, duration, resources, now)
    by_id = {r.resource_id: r for r in resources}
    earliest = now + timedelta(minutes=rules.min_lead_minutes)
    for slot in slots:
        assert slot.start >= earliest
        assert slot.end - slot.start == timedelta(minutes=duration)
        assert slot.start.tzinfo is UTC
        local = slot.local(rules.timezone)
        assert local.date() == day
        inside = [
            (opens, closes)
            for opens, closes in rules.weekly_hours[day.weekday()]
            if opens <= local.time() < closes
        ]
        assert len(inside) == 1
        opens, closes = inside[0]
        since_open = (local.hour * 60 + local.minute) - (opens.hour * 60 + opens.minute)
        assert since_open % rules.slot_minutes == 0
        close = local_moment(day, closes, rules.timezone)
        assert close is None or slot.end <= close
        for resource_id in slot.resource_ids:
            resource = by_id[resource_id]
            assert peak_load(resource.busy, slot.start, slot.end) < resource.capacity
    assert [s.start for s in slots] == sorted({s.start for s in slots})
    assert {s.start: s.resource_ids for s in slots} == expected_starts(
        rules, day, duration, resources, now
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 600), st.integers(1, 240)), max_size=12),
    st.integers(0, 700),
    st.integers(1, 240),
)
def test_peak_load_equals_a_minute_by_minute_count(
    spans: list[tuple[int, int]], offset: int, length: int
) -> None:
    base = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
    minute = timedelta(minutes=1)
    busy = [(base + s * minute, base + (s + n) * minute) for s, n in spans]
    start, end = base + offset * minute, base + (offset + length) * minute
    brute = max(sum(1 for s, e in busy if s <= start + i * minute < e) for i in range(length))
    assert peak_load(busy, start, end) == brute


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_free_slots_booking_any_offer_keeps_its_resource_within_capacity(
    scenario: tuple[Policy, date, int, list[ResourceLoad], datetime],
) -> None:
    rules, day, duration, resources, now = scenario
    by_id = {r.resource_id: r for r in resources}
    for slot in free_slots(rules, day, duration, resources, now):
        resource = by_id[slot.resource_ids[0]]
        after = [*resource.busy, (slot.start, slot.end)]
        # Load only rises at an interval's start, so checking every start checks every instant.
        assert fits(after, resource.capacity)
