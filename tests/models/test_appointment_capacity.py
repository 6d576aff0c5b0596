"""The database itself refuses overlapping appointments beyond a resource's capacity."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, select

from tests.factories import appointment, make_contact, make_org
from zapvet import db
from zapvet.models import Appointment, Contact, Organization, Resource, Service

SLOT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 10:00 in São Paulo


def _book_concurrently(url: str, count: int, isolation: str = "READ COMMITTED") -> list[str]:
    """`count` threads, one connection each, insert the same slot at once.

    Returns each thread's outcome: "booked" or the SQLSTATE it failed with.
    """
    engine = db.build_engine(url, pool_size=count)
    with Session(engine) as session:
        org = session.exec(select(Organization)).one()
        resource = session.exec(select(Resource)).one()
        service = session.exec(select(Service)).one()
        contacts = list(session.exec(select(Contact)))
    barrier = threading.Barrier(count, timeout=60)
    outcomes: list[str] = [""] * count

    def book(index: int) -> None:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level=isolation)
            with Session(bind=conn) as session:
                session.add(
                    appointment(org, resource, service, contacts[index % len(contacts)], SLOT)
                )
                barrier.wait()
                try:
                    session.commit()
                    outcomes[index] = "booked"
                except IntegrityError as exc:
                    outcomes[index] = exc.orig.sqlstate or "?"  # type: ignore[union-attr]
                except DBAPIError as exc:
                    outcomes[index] = exc.orig.sqlstate or "?"  # type: ignore[union-attr]

    threads = [threading.Thread(target=book, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    return outcomes


def _rows(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Appointment)).one()


def test_twenty_concurrent_bookings_of_a_capacity_one_slot_leave_one_row(
    session: Session, database_url: str
) -> None:
    org, _, _ = make_org(session, capacity=1)
    for i in range(20):
        make_contact(session, org, phone=f"55119999900{i:02d}", pet=None)

    outcomes = _book_concurrently(database_url, 20)

    assert outcomes.count("booked") == 1
    assert sorted(set(outcomes) - {"booked"}) == ["23P01"]  # exclusion_violation
    assert _rows(session) == 1


def test_capacity_two_takes_exactly_two_concurrent_bookings(
    session: Session, database_url: str
) -> None:
    org, _, _ = make_org(session, capacity=2)
    for i in range(10):
        make_contact(session, org, phone=f"55119999900{i:02d}", pet=None)

    outcomes = _book_concurrently(database_url, 10)

    assert outcomes.count("booked") == 2
    assert _rows(session) == 2


def test_repeatable_read_writers_cannot_double_book(session: Session, database_url: str) -> None:
    org, _, _ = make_org(session, capacity=1)
    for i in range(8):
        make_contact(session, org, phone=f"55119999900{i:02d}", pet=None)

    outcomes = _book_concurrently(database_url, 8, isolation="REPEATABLE READ")

    assert outcomes.count("booked") == 1
    # Losers fail either on the lock bump (serialization_failure) or on the count.
    assert set(outcomes) - {"booked"} <= {"40001", "23P01"}
    assert _rows(session) == 1


def test_capacity_counts_peak_concurrency_not_overlaps(session: Session) -> None:
    org, resource, service = make_org(session, capacity=2)
    contact, _ = make_contact(session, org, pet=None)
    nine = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    session.add(appointment(org, resource, service, contact, nine, 60))  # 9:00-10:00
    session.add(appointment(org, resource, service, contact, nine + timedelta(minutes=90), 60))
    session.commit()

    # 9:30-11:00 overlaps both, but never more than 2 at once: allowed.
    session.add(appointment(org, resource, service, contact, nine + timedelta(minutes=30), 90))
    session.commit()

    # 9:45-10:45 would make 3 at 9:45 (first, third, this): refused.
    session.add(appointment(org, resource, service, contact, nine + timedelta(minutes=45), 60))
    with pytest.raises(IntegrityError, match="fully booked"):
        session.commit()
    session.rollback()
    assert _rows(session) == 3


def test_back_to_back_appointments_do_not_overlap(session: Session) -> None:
    org, resource, service = make_org(session, capacity=1)
    contact, _ = make_contact(session, org, pet=None)
    session.add(appointment(org, resource, service, contact, SLOT))
    session.add(appointment(org, resource, service, contact, SLOT + timedelta(minutes=30)))
    session.add(appointment(org, resource, service, contact, SLOT - timedelta(minutes=30)))
    session.commit()
    assert _rows(session) == 3


def test_cancelled_and_no_show_appointments_free_their_slot(session: Session) -> None:
    org, resource, service = make_org(session, capacity=1)
    contact, _ = make_contact(session, org, pet=None)
    first = appointment(org, resource, service, contact, SLOT)
    session.add(first)
    session.commit()

    first.status = "cancelled"
    session.commit()
    second = appointment(org, resource, service, contact, SLOT)
    session.add(second)
    session.commit()

    # Reviving the cancelled one would now overbook: refused.
    first.status = "scheduled"
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()

    second.status = "no_show"
    session.commit()
    first.status = "confirmed"
    session.commit()


def test_moving_an_appointment_onto_a_taken_slot_is_refused(session: Session) -> None:
    org, resource, service = make_org(session, capacity=1)
    contact, _ = make_contact(session, org, pet=None)
    taken = appointment(org, resource, service, contact, SLOT)
    moving = appointment(org, resource, service, contact, SLOT + timedelta(hours=2))
    session.add_all([taken, moving])
    session.commit()

    moving.starts_at, moving.ends_at = SLOT + timedelta(minutes=15), SLOT + timedelta(minutes=45)
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()

    # Moving within its own slot (it must not collide with itself) is fine.
    moving.starts_at = SLOT + timedelta(hours=2, minutes=10)
    moving.ends_at = moving.starts_at + timedelta(minutes=30)
    session.commit()


def test_other_resources_are_independent(session: Session) -> None:
    org, resource, service = make_org(session, capacity=1)
    contact, _ = make_contact(session, org, pet=None)
    assert org.id is not None
    other = Resource(organization_id=org.id, name="Dr. Beto", capacity=1)
    session.add(other)
    session.commit()
    session.add(appointment(org, resource, service, contact, SLOT))
    session.add(appointment(org, other, service, contact, SLOT))
    session.commit()
    assert _rows(session) == 2


def test_appointments_must_end_after_they_start_and_last_at_most_a_day(session: Session) -> None:
    org, resource, service = make_org(session)
    contact, _ = make_contact(session, org, pet=None)
    session.add(appointment(org, resource, service, contact, SLOT, minutes=0))
    with pytest.raises(IntegrityError, match="ck_appointments_span"):
        session.commit()
    session.rollback()
    session.add(appointment(org, resource, service, contact, SLOT, minutes=25 * 60))
    with pytest.raises(IntegrityError, match="ck_appointments_span"):
        session.commit()


def test_the_capacity_trigger_is_installed(session: Session) -> None:
    trigger = session.exec(  # type: ignore[call-overload]
        text("SELECT tgname FROM pg_trigger WHERE tgname = 'appointments_capacity'")
    ).all()
    assert len(trigger) == 1
