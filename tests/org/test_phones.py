"""Owner phones in organization files: checked against the numbering plan, and the legacy
8-digit Brazilian mobile form WhatsApp still sends keeps matching the owner."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from tests.conftest import EXAMPLE_ORG
from zapvet import db
from zapvet.bridge.directory import owner_for
from zapvet.bridge.events import Sender
from zapvet.bridge.identity import phone_key
from zapvet.bridge.jid import phone_of
from zapvet.errors import OrgFileError
from zapvet.models import AuroraOwnerNumber
from zapvet.org import apply_spec, parse_spec
from zapvet.org.phones import checked_phone

EXAMPLE = EXAMPLE_ORG.read_text()
OWNER_LINE = 'phone = "+55 11 98888-7777"'


def _with_owner_phone(phone: str) -> str:
    assert EXAMPLE.count(OWNER_LINE) == 1
    return EXAMPLE.replace(OWNER_LINE, f'phone = "{phone}"')


def test_phones_an_area_code_that_does_not_exist_is_refused_with_key_and_line() -> None:
    text = _with_owner_phone("+55 20 91234-5678")
    with pytest.raises(OrgFileError) as caught:
        parse_spec(text, "org.toml")
    (problem,) = caught.value.problems
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "+55 20 91234-5678" in row)
    assert (problem.key, problem.line) == ("owners[1].phone", line)
    assert "area code 20 does not exist in Brazil" in problem.message


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("+55 11 98888-7777", "5511988887777"),
        ("(11) 98888-7777", "5511988887777"),
        ("11 98888-7777", "5511988887777"),
        ("5511988887777", "5511988887777"),
        ("+55 21 3333-4444", "552133334444"),  # a landline
        ("+55 11 8888-7777", "551188887777"),  # the legacy mobile form, kept as written
        ("551188887777", "551188887777"),
        ("+1 415 555 2671", "14155552671"),
        ("+351 912 345 678", "351912345678"),
    ],
)
def test_phones_real_numbers_are_accepted_as_international_digits(typed: str, digits: str) -> None:
    assert checked_phone(typed) == digits


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("+55 20 91234-5678", "area code 20 does not exist"),
        ("+55 10 3333-4444", "area code 10 does not exist"),
        ("+55 11 1888-7777", "not a Brazilian number"),  # no number starts with 1
        ("+55 11 98888-77771", "not a Brazilian number"),  # one digit too many
        ("14155552671", "other countries start with [+]"),  # taken as Brazilian without "+"
        ("+1 415 555 267", "not a valid number for country code [+]1"),
        ("+999 912 345 678", "unknown country code"),
        ("ligar", "not a phone number"),
    ],
)
def test_phones_numbers_that_cannot_exist_are_refused(typed: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        checked_phone(typed)


@pytest.mark.anyio
@pytest.mark.parametrize("written", ["+55 11 98888-7777", "+55 11 8888-7777"])
async def test_phones_an_owner_matches_both_ninth_digit_spellings_whatsapp_sends(
    written: str, session: Session, database_url: str
) -> None:
    report = apply_spec(session, parse_spec(_with_owner_phone(written)))
    session.commit()
    owner = session.exec(select(AuroraOwnerNumber)).one()
    assert owner.phone_key == phone_key("5511988887777") == "551188887777"

    engine = db.build_async_engine(database_url, pool_size=1)
    try:
        async with db.async_session_maker(engine)() as async_session:
            for jid in ("5511988887777@s.whatsapp.net", "551188887777@s.whatsapp.net"):
                sender = Sender(phone=phone_of(jid))
                found = await owner_for(async_session, report.organization_id, sender)
                assert found is not None and found.id == owner.id, jid
            stranger = Sender(phone=phone_of("5511977776666@s.whatsapp.net"))
            assert await owner_for(async_session, report.organization_id, stranger) is None
    finally:
        await engine.dispose()
