"""The agenda's calendar feeds: `zapvet calendar rotate|list` and `GET /calendar/{token}.ics`
through the real bridge on loopback, parsed back with the `icalendar` library (RFC 5545)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import icalendar
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from tests.conftest import SAO_PAULO, zapvet
from tests.fixtures_day import add
from tests.pipeline.support import Recorder
from zapvet.bridge.app import build_app
from zapvet.embedded import ServiceUrls
from zapvet.models import Organization, Resource, ResourceService, Service
from zapvet.runtime import bridge_state_factory
from zapvet.scheduling.calendar import escape, fold
from zapvet.serving import BackgroundServer

#: Tomorrow at 09:00 in São Paulo, whatever day the test runs (the feed is around "now").
TOMORROW = (datetime.now(SAO_PAULO) + timedelta(days=1)).replace(
    hour=9, minute=0, second=0, microsecond=0
)


@dataclass
class Feeds:
    origin: str
    env: dict[str, str]

    def rotate(self, *args: str) -> str:
        result = zapvet("calendar", "rotate", "--org", "petfeliz", *args, env=self.env)
        assert result.exit_code == 0, result.output
        url = result.stdout.strip()
        assert url.startswith("http://127.0.0.1:8000/calendar/") and url.endswith(".ics")
        return self.origin + url.removeprefix("http://127.0.0.1:8000")

    def get(self, url: str) -> httpx.Response:
        return httpx.get(url)

    def calendar(self, url: str) -> icalendar.Calendar:
        response = self.get(url)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/calendar; charset=utf-8"
        return icalendar.Calendar.from_ical(response.content)


@pytest.fixture
def feeds(
    database_url: str, services: ServiceUrls, engine: Engine, petfeliz: Organization
) -> Iterator[Feeds]:
    state = bridge_state_factory(
        database_url,
        services.redis_url,
        namespace=f"zt{uuid.uuid4().hex[:10]}",
        pool_size=2,
        queue=Recorder(),  # type: ignore[arg-type]
    )
    server = BackgroundServer(build_app(state), name="zapvet-bridge-calendar")
    server.start()
    try:
        yield Feeds(server.origin, {"DATABASE_URL": database_url, "REDIS_URL": services.redis_url})
    finally:
        server.stop()


def _catalogue(session: Session, org: Organization) -> tuple[list[Service], list[Resource]]:
    services = list(session.exec(select(Service).where(Service.organization_id == org.id)))
    resources = list(session.exec(select(Resource).where(Resource.organization_id == org.id)))
    return services, resources


def events(calendar: icalendar.Calendar) -> list[icalendar.Event]:
    return list(calendar.walk("VEVENT"))


def test_the_feed_is_the_agenda_with_first_names_only_at_the_right_instants(
    feeds: Feeds, session: Session, petfeliz: Organization
) -> None:
    services, resources = _catalogue(session, petfeliz)
    bath = next(s for s in services if s.name.startswith("Banho"))
    groomer = next(r for r in resources if bath.id in _service_ids(session, r))
    booked = add(
        session, petfeliz, "5511977776666", "Marina Souza", bath, groomer, TOMORROW, "scheduled"
    )
    add(
        session,
        petfeliz,
        "5511977775555",
        "Caio Lima",
        bath,
        groomer,
        TOMORROW + timedelta(hours=2),
        "cancelled",
    )
    session.commit()

    calendar = feeds.calendar(feeds.rotate())
    assert str(calendar["X-WR-TIMEZONE"]) == "America/Sao_Paulo"
    (event,) = events(calendar)  # the cancelled one is left out
    assert str(event["SUMMARY"]) == f"{bath.name} · Pet de Marina Souza (Marina)"
    assert "Souza" not in str(event["SUMMARY"]).replace("Pet de Marina Souza", "")
    assert event.decoded("DTSTART") == booked.starts_at.astimezone(UTC)
    assert event.decoded("DTEND") == booked.ends_at.astimezone(UTC)
    assert event.decoded("DTSTART").astimezone(SAO_PAULO).hour == 9
    assert str(event["DESCRIPTION"]) == f"{groomer.name} · agendado"
    assert str(event["UID"]).startswith(f"appointment-{booked.id}-petfeliz@")


def test_a_resources_feed_holds_only_its_agenda(
    feeds: Feeds, session: Session, petfeliz: Organization
) -> None:
    services, resources = _catalogue(session, petfeliz)
    assert len(resources) >= 2
    for index, resource in enumerate(resources[:2]):
        service = next(s for s in services if s.id in _service_ids(session, resource))
        start = TOMORROW + timedelta(days=index)
        add(
            session,
            petfeliz,
            f"55119777700{index:02d}",
            f"Cliente {index}",
            service,
            resource,
            start,
            "confirmed",
        )
    session.commit()
    everything = events(feeds.calendar(feeds.rotate()))
    one = events(feeds.calendar(feeds.rotate("--resource", resources[0].name)))
    assert len(everything) == 2 and len(one) == 1
    assert str(one[0]["DESCRIPTION"]) == f"{resources[0].name} · confirmado"


def test_rotating_cuts_off_the_old_url_and_unknown_tokens_are_404(feeds: Feeds) -> None:
    first = feeds.rotate()
    assert feeds.get(first).status_code == 200
    second = feeds.rotate()
    assert feeds.get(first).status_code == 404
    assert feeds.get(second).status_code == 200
    assert feeds.get(f"{feeds.origin}/calendar/not-a-token.ics").status_code == 404
    listed = zapvet("calendar", "list", "--org", "petfeliz", env=feeds.env)
    assert listed.exit_code == 0 and listed.stdout.startswith("(whole agenda)\tmade ")


def test_unknown_names_are_refused_with_what_to_do(feeds: Feeds) -> None:
    unknown = zapvet("calendar", "rotate", "--org", "nada", env=feeds.env)
    assert unknown.exit_code == 1 and "no organization 'nada'" in unknown.stderr
    resource = zapvet(
        "calendar", "rotate", "--org", "petfeliz", "--resource", "Ninguém", env=feeds.env
    )
    assert resource.exit_code == 1 and "no resource 'Ninguém'" in resource.stderr


def _service_ids(session: Session, resource: Resource) -> set[int]:
    links = session.exec(select(ResourceService).where(ResourceService.resource_id == resource.id))
    return {link.service_id for link in links}


def test_long_and_special_text_folds_and_escapes_as_rfc_5545_says() -> None:
    summary = "Banho & Tosa; com hidratação, perfume\nlaço " + "ção" * 40
    line = fold("SUMMARY:" + escape(summary))
    assert all(len(part.encode()) <= 75 for part in line.split("\r\n"))
    body = f"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n{line}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    (event,) = icalendar.Calendar.from_ical(body).walk("VEVENT")
    assert str(event["SUMMARY"]) == summary
