"""`zapvet contact block/unblock`: the number as the bridge matches it, one organization only,
idempotent, audited, and clear about what it refuses."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import Result
from sqlmodel import Session, col, select

from tests.conftest import second_shop, zapvet
from zapvet.bridge.identity import phone_key
from zapvet.embedded import ServiceUrls
from zapvet.models import AuditLog, Contact, ContactIdentity, Organization

MARINA = "5511977776666"  # as WhatsApp sends it, with the ninth digit
Run = Callable[..., Result]


@pytest.fixture
def run(database_url: str, services: ServiceUrls) -> Run:
    def run(*args: str) -> Result:
        return zapvet(
            "contact", *args, env={"DATABASE_URL": database_url, "REDIS_URL": services.redis_url}
        )

    return run


def contacts(session: Session, org: Organization) -> list[Contact]:
    session.expire_all()
    query = select(Contact).where(Contact.organization_id == org.id).order_by(col(Contact.id))
    return list(session.exec(query))


def known(session: Session, org: Organization, phone: str) -> Contact:
    """A contact the bridge created: the phone as WhatsApp sent it, and its identity."""
    assert org.id is not None
    contact = Contact(organization_id=org.id, phone=phone, name="Marina")
    session.add(contact)
    session.flush()
    session.add(
        ContactIdentity(
            organization_id=org.id, contact_id=contact.id or 0, kind="phone", value=phone_key(phone)
        )
    )
    session.commit()
    return contact


def test_contact_block_and_unblock_match_every_spelling_of_the_number(
    run: Run, session: Session, petfeliz: Organization
) -> None:
    marina = known(session, petfeliz, MARINA)

    blocked = run("block", "+55 (11) 97777-6666", "--org", "petfeliz")
    assert blocked.exit_code == 0, blocked.output
    assert blocked.stdout.strip() == (
        "blocked +5511977776666 (Marina) in 'petfeliz': their messages are kept and never answered"
    )
    assert [(c.id, c.status) for c in contacts(session, petfeliz)] == [(marina.id, "blocked")]

    # Without the ninth digit, without the country code: the same person, already blocked.
    again = run("block", "11 7777-6666", "--org", "petfeliz")
    assert again.exit_code == 0, again.output
    assert (
        again.stdout.strip()
        == "+551177776666 (Marina) was already blocked in 'petfeliz' (no change)"
    )

    unblocked = run("unblock", "551177776666", "--org", "petfeliz")
    assert unblocked.exit_code == 0, unblocked.output
    assert "unblocked +551177776666 (Marina) in 'petfeliz'" in unblocked.stdout
    assert [c.status for c in contacts(session, petfeliz)] == ["active"]
    twice = run("unblock", MARINA, "--org", "petfeliz")
    assert (
        twice.stdout.strip() == "+5511977776666 (Marina) was not blocked in 'petfeliz' (no change)"
    )

    audits = session.exec(select(AuditLog).order_by(col(AuditLog.id))).all()
    assert [(a.actor_kind, a.actor_id, a.action, a.entity, a.entity_id) for a in audits] == [
        ("cli", None, "block_contact", "contacts", marina.id),
        ("cli", None, "unblock_contact", "contacts", marina.id),
    ]
    assert audits[0].before and audits[0].after
    assert (audits[0].before["status"], audits[0].after["status"]) == ("active", "blocked")


def test_contact_block_creates_an_unknown_number_blocked_with_its_identity(
    run: Run, session: Session, petfeliz: Organization
) -> None:
    result = run("block", "+55 11 96666-5555", "--org", "petfeliz")
    assert result.exit_code == 0, result.output
    assert "a new contact; nothing they send will be answered" in result.stdout
    (created,) = contacts(session, petfeliz)
    assert (created.phone, created.status, created.last_contact_at) == (
        "5511966665555",
        "blocked",
        None,
    )
    identity = session.exec(select(ContactIdentity)).one()
    assert (identity.contact_id, identity.kind, identity.value) == (
        created.id,
        "phone",
        "551166665555",  # the bridge's key: the legacy spelling matches too
    )
    (audit,) = session.exec(select(AuditLog)).all()
    assert (audit.action, audit.before, audit.entity_id) == ("block_contact", None, created.id)


def test_contact_unblock_of_an_unknown_number_creates_nothing(
    run: Run, session: Session, petfeliz: Organization
) -> None:
    result = run("unblock", "11 96666-5555", "--org", "petfeliz")
    assert result.exit_code == 0, result.output
    assert "no contact has that number (no change)" in result.stdout
    assert contacts(session, petfeliz) == []
    assert session.exec(select(AuditLog)).all() == []


def test_contact_block_leaves_the_same_number_in_another_organization_alone(
    run: Run, session: Session, petfeliz: Organization
) -> None:
    other = second_shop(session)
    known(session, petfeliz, MARINA)
    theirs = known(session, other, MARINA)
    assert run("block", MARINA, "--org", "petfeliz").exit_code == 0
    assert [c.status for c in contacts(session, petfeliz)] == ["blocked"]
    assert [(c.id, c.status) for c in contacts(session, other)] == [(theirs.id, "active")]


def test_contact_block_finds_a_contact_stored_without_identities_and_records_one(
    run: Run, session: Session, petfeliz: Organization
) -> None:
    assert petfeliz.id is not None
    legacy = Contact(organization_id=petfeliz.id, phone="551177776666", name="Marina")
    session.add(legacy)
    session.commit()
    assert run("block", "+55 11 97777-6666", "--org", "petfeliz").exit_code == 0
    assert [(c.id, c.status) for c in contacts(session, petfeliz)] == [(legacy.id, "blocked")]
    identity = session.exec(select(ContactIdentity)).one()
    assert (identity.contact_id, identity.value) == (legacy.id, "551177776666")


def test_contact_block_refuses_unknown_org_bad_phone_and_owner_numbers(
    run: Run, session: Session, petfeliz: Organization
) -> None:
    unknown = run("block", MARINA, "--org", "nope")
    assert unknown.exit_code == 1
    assert "error: no organization 'nope'" in unknown.stderr

    garbled = run("block", "12-34", "--org", "petfeliz")
    assert garbled.exit_code == 2
    assert "error: '12-34' is not a phone number" in garbled.stderr

    # The example's owner is +55 11 98888-7777; the legacy spelling is the same number.
    owner = run("block", "11 8888-7777", "--org", "petfeliz")
    assert owner.exit_code == 1
    assert "is an owner number of 'petfeliz'" in owner.stderr
    assert contacts(session, petfeliz) == []
    assert session.exec(select(AuditLog)).all() == []


def test_contact_commands_have_help(run: Run) -> None:
    for command in ("block", "unblock"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "--org" in result.stdout and "ninth digit" in result.stdout
