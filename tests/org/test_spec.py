"""Organization files: a bad file gets errors naming the key and line; nothing else passes."""

from __future__ import annotations

from datetime import time

import pytest

from tests.conftest import EXAMPLE_ORG
from zapvet.errors import OrgFileError
from zapvet.org import load_spec, parse_spec

EXAMPLE = EXAMPLE_ORG.read_text()


def _problems(text: str) -> list[str]:
    with pytest.raises(OrgFileError) as caught:
        parse_spec(text, "org.toml")
    return [str(problem) for problem in caught.value.problems]


def _line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    return lines[occurrence - 1]


def test_the_example_is_a_realistic_pet_shop_and_clinic() -> None:
    spec = load_spec(EXAMPLE_ORG)
    prices = {s.name: s.price for s in spec.services}
    assert prices["Consulta Veterinária Geral"] == 12000
    assert {s.category for s in spec.services} >= {"banho", "tosa", "consulta", "vacina"}
    performers = {r.name: set(r.services) for r in spec.resources}
    assert sum(1 for s in performers.values() if {"banho", "tosa"} <= s) == 2  # two groomers
    assert sum(1 for s in performers.values() if "consulta" in s) == 1  # one vet
    hours = spec.weekly_hours()
    assert sorted(hours) == [0, 1, 2, 3, 4, 5]  # Monday to Saturday
    assert len(spec.owners) == 1 and spec.owners[0].phone == "5511988887777"
    # The seed's Rex booking: a general consultation at 10:00 on a weekday.
    assert any(opens <= time(10) and time(10, 30) <= closes for opens, closes in hours[3])


def test_an_unknown_key_is_named_with_its_line() -> None:
    text = EXAMPLE.replace("capacity_x", "").replace(
        'category = "consulta"', 'categry = "consulta"'
    )
    problems = _problems(text)
    line = _line_of(text, "categry")
    assert f"line {line}: services[4].categry: unknown key" in problems
    assert f"line {line - 1}: services[4].category: required key is missing" not in problems


def test_a_bad_price_is_named_with_its_line() -> None:
    text = EXAMPLE.replace('price = "120.00"', 'price = "cento e vinte"')
    line = _line_of(text, "cento e vinte")
    assert _problems(text) == [
        f"line {line}: services[4].price: expected a price like \"120.00\", got 'cento e vinte'"
    ]


def test_a_missing_section_is_reported() -> None:
    text = EXAMPLE.replace("[organization]", "[organisation]")
    problems = _problems(text)
    assert any(p.endswith("organization: required key is missing") for p in problems)
    assert any("organisation: unknown key" in p for p in problems)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('timezone = "America/Sao_Paulo"', 'timezone = "America/Recife_X"', "unknown timezone"),
        ('slug = "petfeliz"', 'slug = "Pet Feliz"', "organization.slug: use lowercase"),
        ('sat = ["08:00-13:00"]', 'sat = ["13:00-08:00"]', "hours.sat"),
        ('sat = ["08:00-13:00"]', 'sat = ["8h-13h"]', "expected a time like"),
        (
            'sat = ["08:00-13:00"]',
            'sat = ["08:00-12:00", "11:00-13:00"]',
            "opening intervals overlap",
        ),
        ('phone = "+55 11 98888-7777"', 'phone = "ligar"', "owners[1].phone: not a phone number"),
        ('api_key = "evo-secret"', "", "whatsapp[1]: a evolution instance needs api_key"),
        (
            'services = ["consulta", "vacina"]',
            'services = ["consulta", "vacinas"]',
            "'vacinas' is neither",
        ),
        ('name = "Tosa Higiênica"', 'name = "Banho"', "services[3].name: duplicate name 'Banho'"),
        ("duration_minutes = 30", "duration_minutes = 0", "greater than or equal to 5"),
        ("temperature = 0.3", "temperature = 7", "ai.temperature"),
        ("debounce_seconds = 3 ", "debounce_seconds = -1 ", "ai.debounce_seconds"),
        ('quiet_hours = "21:00-08:00"', 'quiet_hours = "noite"', "aurora.quiet_hours"),
        ("date = 2027-01-01", "date = 2026-12-25", "closures[2].date: duplicate date"),
    ],
)
def test_invalid_values_are_explained(old: str, new: str, expected: str) -> None:
    assert old in EXAMPLE
    text = EXAMPLE.replace(old, new, 1)
    problems = _problems(text)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith("line ") for p in problems), problems


def test_a_service_nobody_performs_is_refused() -> None:
    text = EXAMPLE.replace('services = ["consulta", "vacina"]', 'services = ["consulta"]')
    assert any("no resource performs this service" in p for p in _problems(text))


def test_toml_syntax_errors_carry_the_line() -> None:
    text = EXAMPLE.replace('name = "Carla"', 'name = "Carla')
    (problem,) = _problems(text)
    line = _line_of(text, 'name = "Carla')
    assert problem.startswith(f"line {line}: not valid TOML")


def test_a_missing_file_is_an_org_file_error(tmp_path: object) -> None:
    with pytest.raises(OrgFileError, match="cannot read the file"):
        load_spec("/nonexistent/org.toml")


def test_prices_may_be_written_as_numbers() -> None:
    text = EXAMPLE.replace('price = "120.00"', "price = 120").replace(
        'price = "50.00"', "price = 49.9"
    )
    spec = parse_spec(text)
    prices = {s.name: s.price for s in spec.services}
    assert prices["Consulta Veterinária Geral"] == 12000 and prices["Banho"] == 4990


TEMPLATE = """
[[templates]]
kind = "appointment_reminder"
name = "lembrete_horario"
parameters = ["cliente", "pet", "servico", "horario"]
"""


def test_templates_keep_their_parameters_in_the_files_order() -> None:
    [template] = parse_spec(EXAMPLE + TEMPLATE).templates
    assert (template.kind, template.name, template.language) == (
        "appointment_reminder",
        "lembrete_horario",
        "pt_BR",
    )
    assert template.parameters == ["cliente", "pet", "servico", "horario"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '"horario"]',
            '"hora"]',
            "appointment_reminder has no parameter 'hora'; it can fill: "
            "cliente, pet, servico, horario, data, loja",
        ),
        ('name = "lembrete_horario"', 'name = "Lembrete Horário"', "a template name as Meta"),
        ('kind = "appointment_reminder"', 'kind = "lembrete"', "Input should be"),
        ("parameters = [", 'language = "portuguese"\nparameters = [', "a template language code"),
    ],
    ids=["unknown parameter", "name", "kind", "language"],
)
def test_a_wrong_template_is_explained_with_its_line(old: str, new: str, expected: str) -> None:
    text = EXAMPLE + TEMPLATE.replace(old, new)
    [problem] = _problems(text)
    assert expected in problem
    assert problem.startswith("line ")


def test_two_templates_for_one_kind_are_refused() -> None:
    [problem] = _problems(EXAMPLE + TEMPLATE + TEMPLATE)
    assert "templates[2].kind: duplicate kind 'appointment_reminder'" in problem
