"""`[limits]` in the organization file: documented defaults, clear errors, applied by apply."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from tests.conftest import EXAMPLE_ORG
from zapvet.errors import OrgFileError
from zapvet.models import AISettings
from zapvet.models.organization import LIMIT_DEFAULTS
from zapvet.org import apply_spec, parse_spec

EXAMPLE = EXAMPLE_ORG.read_text()
#: The example without its [limits] block: what an organization file that says nothing gets.
WITHOUT = EXAMPLE.replace(
    "[limits]\ncontact_messages_per_minute = 20\ncontact_messages_per_day = 300\n"
    "org_turns_per_minute = 600\n"
    "# After this many exchanges in a row answered within 5 s of our reply (another bot answering\n"
    "# ours), the conversation goes to a person with no further reply; 0 turns this off.\n"
    "bot_loop_exchanges = 6\n",
    "",
)


def test_the_example_states_the_defaults_and_a_file_without_limits_gets_them() -> None:
    assert WITHOUT != EXAMPLE
    for text in (EXAMPLE, WITHOUT):
        assert parse_spec(text).limits.model_dump() == LIMIT_DEFAULTS


def test_a_limit_below_one_or_not_a_number_is_refused_with_its_line() -> None:
    text = EXAMPLE.replace("contact_messages_per_day = 300", 'contact_messages_per_day = "muitas"')
    text = text.replace("org_turns_per_minute = 600", "org_turns_per_minute = 0")
    with pytest.raises(OrgFileError) as caught:
        parse_spec(text, "org.toml")
    problems = " | ".join(str(problem) for problem in caught.value.problems)
    assert "limits.contact_messages_per_day" in problems
    assert "limits.org_turns_per_minute" in problems and "greater than or equal to 1" in problems
    lines = text.splitlines()
    assert f"line {lines.index('org_turns_per_minute = 0') + 1}" in problems


def test_apply_stores_the_limits_and_reports_a_change(session: Session) -> None:
    report = apply_spec(session, parse_spec(EXAMPLE))
    settings = session.get(AISettings, report.organization_id)
    assert settings is not None and settings.contact_messages_per_minute == 20
    session.commit()
    tighter = EXAMPLE.replace("contact_messages_per_minute = 20", "contact_messages_per_minute = 5")
    changes = apply_spec(session, parse_spec(tighter)).changes
    assert changes == ["ai: contact_messages_per_minute 20 → 5"]
    session.commit()
    session.refresh(settings)
    assert settings.contact_messages_per_minute == 5
    assert apply_spec(session, parse_spec(tighter)).changes == []
