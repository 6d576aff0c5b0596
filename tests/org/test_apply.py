"""`apply_spec` is idempotent, updates in place, deactivates what left the file."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from tests.conftest import EXAMPLE_ORG
from tests.factories import make_contact
from zapvet.errors import OrgFileError
from zapvet.models import (
    AISettings,
    Appointment,
    AuroraOwnerNumber,
    BusinessHours,
    Closure,
    Organization,
    Resource,
    ResourceService,
    Service,
    WhatsAppInstance,
)
from zapvet.org import apply_spec, parse_spec

EXAMPLE = EXAMPLE_ORG.read_text()
TABLES = (
    "organizations",
    "ai_settings",
    "whatsapp_instances",
    "aurora_owner_numbers",
    "services",
    "resources",
    "resource_services",
    "business_hours",
    "closures",
    "whatsapp_templates",
)


def _apply(session: Session, text_: str = EXAMPLE) -> list[str]:
    report = apply_spec(session, parse_spec(text_))
    session.commit()
    return report.changes


def _row_versions(session: Session) -> dict[str, list[str]]:
    """Every row's xmin per table: any UPDATE, DELETE or INSERT changes this."""
    return {
        table: sorted(
            str(row[0])
            for row in session.exec(text(f"SELECT xmin::text FROM {table}"))  # type: ignore[call-overload]
        )
        for table in TABLES
    }


def test_applying_the_example_creates_the_organization(session: Session) -> None:
    changes = _apply(session)
    assert changes[0] == "organization 'petfeliz' created"
    org = session.exec(select(Organization)).one()
    assert (org.slug, org.timezone, org.slot_minutes) == ("petfeliz", "America/Sao_Paulo", 30)
    assert len(session.exec(select(Service)).all()) == 6
    assert len(session.exec(select(Resource)).all()) == 3
    assert len(session.exec(select(ResourceService)).all()) == 9
    assert len(session.exec(select(BusinessHours)).all()) == 11
    assert len(session.exec(select(Closure)).all()) == 2
    owner = session.exec(select(AuroraOwnerNumber)).one()
    assert (owner.phone, owner.phone_key, owner.is_active) == (
        "5511988887777",
        "551188887777",
        True,
    )
    instance = session.exec(select(WhatsAppInstance)).one()
    assert (instance.provider, instance.instance, instance.api_key) == (
        "evolution",
        "petfeliz",
        "evo-secret",
    )
    ai = session.exec(select(AISettings)).one()
    assert (ai.debounce_seconds, ai.quiet_hours_start, ai.daily_summary_at) == (
        3,
        time(21),
        time(19),
    )


def test_applying_twice_changes_nothing(session: Session) -> None:
    _apply(session)
    before = _row_versions(session)
    assert _apply(session) == []
    assert _row_versions(session) == before


def test_changing_a_price_updates_only_that_service(session: Session) -> None:
    _apply(session)
    consulta = session.exec(
        select(Service).where(Service.name == "Consulta Veterinária Geral")
    ).one()
    others = {s.id: s.price_cents for s in session.exec(select(Service)) if s.id != consulta.id}

    changes = _apply(session, EXAMPLE.replace('price = "120.00"', 'price = "135.50"'))

    assert changes == ["service 'Consulta Veterinária Geral': price_cents R$ 120,00 → R$ 135,50"]
    session.expire_all()
    assert session.get(Service, consulta.id).price_cents == 13550  # type: ignore[union-attr]
    assert {
        s.id: s.price_cents for s in session.exec(select(Service)) if s.id != consulta.id
    } == others


def test_rows_that_leave_the_file_are_deactivated_not_deleted(session: Session) -> None:
    _apply(session)
    without = EXAMPLE.replace(
        '[[services]]\nname = "Vacina Antirrábica"\ncategory = "vacina"\n'
        'duration_minutes = 15\nprice = "70.00"\n',
        "",
    ).replace('[[owners]]\nname = "Saraiva"\nphone = "+55 11 98888-7777"\n', "")
    assert without.count("[[services]]") == 5 and "[[owners]]" not in without

    changes = _apply(session, without)

    assert "service 'Vacina Antirrábica': is_active True → False" in changes
    assert "owner Saraiva: is_active True → False" in changes
    session.expire_all()
    rabies = session.exec(select(Service).where(Service.name == "Vacina Antirrábica")).one()
    assert rabies.is_active is False
    assert session.exec(select(AuroraOwnerNumber)).one().is_active is False
    # Its resource link went away with it; the others stay.
    assert len(session.exec(select(ResourceService)).all()) == 8

    assert _apply(session)  # back in the file: reactivated
    session.expire_all()
    assert session.get(Service, rabies.id).is_active is True  # type: ignore[union-attr]


def test_hours_and_closures_follow_the_file(session: Session) -> None:
    _apply(session)
    changed = EXAMPLE.replace('sat = ["08:00-13:00"]', 'sat = ["09:00-12:00"]').replace(
        "date = 2027-01-01", "date = 2027-01-02"
    )
    changes = _apply(session, changed)
    assert "hours: sat opens 09:00-12:00" in changes
    assert "hours: sat no longer opens 08:00-13:00" in changes
    assert "closure 2027-01-02 added" in changes and "closure 2027-01-01 removed" in changes


def test_an_instance_of_another_organization_is_refused_and_nothing_is_written(
    session: Session, engine: Engine
) -> None:
    _apply(session)
    other = EXAMPLE.replace('slug = "petfeliz"', 'slug = "outra"')
    with pytest.raises(OrgFileError, match="belongs to another organization"):
        apply_spec(session, parse_spec(other))
    session.rollback()
    with Session(engine) as fresh:
        assert [o.slug for o in fresh.exec(select(Organization))] == ["petfeliz"]


def test_the_rex_consultation_tomorrow_at_ten_is_bookable(session: Session) -> None:
    _apply(session)
    org = session.exec(select(Organization)).one()
    zone = ZoneInfo(org.timezone)
    day = datetime(2026, 11, 25, tzinfo=zone).date() + timedelta(days=1)  # a Thursday
    consulta = session.exec(select(Service).where(Service.category == "consulta")).one()
    vet = session.exec(
        select(Resource)
        .join(ResourceService, ResourceService.resource_id == Resource.id)  # type: ignore[arg-type]
        .where(ResourceService.service_id == consulta.id)
    ).one()
    hours = session.exec(select(BusinessHours).where(BusinessHours.weekday == day.weekday())).all()
    start = datetime.combine(day, time(10), zone)
    end = start + timedelta(minutes=consulta.duration_minutes)
    assert any(h.opens_at <= start.time() and end.time() <= h.closes_at for h in hours)

    contact, rex = make_contact(session, org, pet="Rex")
    assert org.id and contact.id and rex and rex.id and consulta.id and vet.id
    session.add(
        Appointment(
            organization_id=org.id,
            contact_id=contact.id,
            pet_id=rex.id,
            service_id=consulta.id,
            resource_id=vet.id,
            starts_at=start,
            ends_at=end,
            price_cents=consulta.price_cents,
        )
    )
    session.commit()
    booked = session.exec(select(Appointment)).one()
    assert booked.starts_at == start.astimezone(UTC)
    assert booked.price_cents == 12000


REMINDER_TEMPLATE = """
[[templates]]
kind = "appointment_reminder"
name = "lembrete_horario"
parameters = ["cliente", "pet", "servico", "horario"]
"""
CLOUD_NUMBER = """
[[whatsapp]]
provider = "cloud"
phone_number_id = "106540352242922"
access_token = "token"
app_secret = "secret"
verify_token = "verify"

"""


def _on_cloud(text_: str) -> str:
    return text_.replace("[[owners]]", CLOUD_NUMBER + "[[owners]]", 1)


def test_templates_are_stored_updated_and_removed_with_the_file(session: Session) -> None:
    assert "template appointment_reminder added (lembrete_horario, pt_BR)" in _apply(
        session, EXAMPLE + REMINDER_TEMPLATE
    )
    before = _row_versions(session)
    assert _apply(session, EXAMPLE + REMINDER_TEMPLATE) == []
    assert _row_versions(session) == before
    reordered = REMINDER_TEMPLATE.replace('"servico", "horario"', '"horario", "servico"')
    [change] = _apply(session, EXAMPLE + reordered)
    assert change.startswith("template appointment_reminder: parameters")
    stored = session.exec(text("SELECT kind, name, language, parameters FROM whatsapp_templates"))  # type: ignore[call-overload]
    assert list(stored) == [
        (
            "appointment_reminder",
            "lembrete_horario",
            "pt_BR",
            ["cliente", "pet", "horario", "servico"],
        )
    ]
    assert _apply(session) == ["template appointment_reminder removed"]


def test_a_cloud_number_without_templates_is_warned_about_each_kind_it_sends(
    session: Session,
) -> None:
    report = apply_spec(session, parse_spec(_on_cloud(EXAMPLE) + REMINDER_TEMPLATE))
    kinds = [warning.split(":")[0] for warning in report.warnings]
    # The example sends a daily summary; it has no monthly budget, so no budget alerts.
    assert kinds == [
        "no [[templates]] for care_invitation",
        "no [[templates]] for daily_summary",
        "no [[templates]] for escalation_alert",
        "no [[templates]] for template_alert",
    ]
    assert "skipped (the reason is recorded)" in report.warnings[0]


def test_an_evolution_number_needs_no_templates(session: Session) -> None:
    assert apply_spec(session, parse_spec(EXAMPLE)).warnings == []
