"""The command line: every DESIGN §3 command, honest about what is not built yet."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from tests.conftest import EXAMPLE_ORG, libpq_url, zapvet
from zapvet import db
from zapvet.cli import app
from zapvet.embedded import ServiceUrls

COMMANDS = [
    ["dev"],
    ["demo"],
    ["chat"],
    ["bridge"],
    ["worker"],
    ["scheduler"],
    ["db", "upgrade"],
    ["org", "apply"],
    ["stats"],
    ["dlq", "list"],
    ["dlq", "requeue"],
    ["contact", "block"],
    ["contact", "unblock"],
    ["eval"],
    ["status"],
    ["studio-context"],
]
runner = CliRunner()


def entrypoint(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the real `zapvet` entrypoint in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "zapvet", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_every_design_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in {c[0] for c in COMMANDS}:
        assert f" {command} " in result.output, command


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_its_own_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def _commands(group: TyperGroup, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


def test_options_that_read_an_environment_variable_say_so_in_help() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    shown = set()
    for path in _commands(root):
        command: Any = root
        for name in path:
            command = command.commands[name]
        names = [p.envvar for p in command.params if isinstance(p, TyperOption) and p.envvar]
        if names:
            result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
            for name in names:
                assert f"[env var: {name}]" in result.output, (path, name)
                shown.add(name)
    assert {"ZAPVET_WORKER_PROCESSES", "ZAPVET_WORKER_THREADS"} <= shown


def test_a_bad_option_variable_names_it_before_anything_starts() -> None:
    result = runner.invoke(app, ["worker"], env={"ZAPVET_WORKER_THREADS": "0", "COLUMNS": "200"})
    assert result.exit_code == 2
    assert "(env var: 'ZAPVET_WORKER_THREADS')" in result.output


def test_an_invalid_setting_names_the_variable() -> None:
    result = zapvet("status", env={"ZAPVET_LOG_FORMAT": "xml"})
    assert result.exit_code == 2
    assert "ZAPVET_LOG_FORMAT: must be 'json' or 'console'" in result.stderr


def test_upgrade_apply_and_status_against_external_servers(
    empty_database_url: str, services: ServiceUrls
) -> None:
    env = {"DATABASE_URL": empty_database_url, "REDIS_URL": services.redis_url}

    applied_early = zapvet("org", "apply", str(EXAMPLE_ORG), env=env)
    assert applied_early.exit_code == 1
    assert "run `zapvet db upgrade` first" in applied_early.stderr

    upgraded = zapvet("db", "upgrade", env=env)
    assert upgraded.exit_code == 0, upgraded.output
    head = db.head_revision()
    assert f"database migrated: empty → {head}" in upgraded.stdout
    assert f"already at revision {head}" in zapvet("db", "upgrade", env=env).stdout

    applied = zapvet("org", "apply", str(EXAMPLE_ORG), env=env)
    assert applied.exit_code == 0, applied.output
    assert "organization 'petfeliz' created" in applied.stdout
    assert "service 'Consulta Veterinária Geral' added (R$ 120,00)" in applied.stdout
    again = zapvet("org", "apply", str(EXAMPLE_ORG), env=env)
    assert again.stdout.strip() == "organization 'petfeliz' is up to date (no changes)"

    status = zapvet("status", env=env)
    assert status.exit_code == 0, status.output
    assert "PostgreSQL (external)" in status.stdout
    assert "6 services, 3 resources, 1 owner numbers" in status.stdout
    assert "http://127.0.0.1:8080/webhooks/evolution/petfeliz" in status.stdout


def test_a_bad_org_file_names_key_and_line_and_writes_nothing(
    database_url: str, services: ServiceUrls, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE_ORG.read_text().replace('price = "120.00"', 'price = "muito"'))
    result = zapvet(
        "org",
        "apply",
        str(bad),
        env={"DATABASE_URL": database_url, "REDIS_URL": services.redis_url},
    )
    assert result.exit_code == 1
    assert "services[4].price: expected a price" in result.stderr
    assert f"{bad}:line " in result.stderr
    assert "nothing was written" in result.stderr
    with psycopg.connect(libpq_url(database_url)) as conn:
        assert conn.execute("SELECT count(*) FROM organizations").fetchone() == (0,)


def test_org_apply_warns_about_proactive_kinds_without_a_cloud_template(
    database_url: str, services: ServiceUrls, tmp_path: Path
) -> None:
    cloud = tmp_path / "cloud.toml"
    number = (
        '[[whatsapp]]\nprovider = "cloud"\nphone_number_id = "106540352242922"\n'
        'access_token = "t"\napp_secret = "s"\nverify_token = "v"\n\n[[owners]]'
    )
    cloud.write_text(EXAMPLE_ORG.read_text().replace("[[owners]]", number, 1))
    env = {"DATABASE_URL": database_url, "REDIS_URL": services.redis_url}
    for _ in range(2):  # applied, then up to date: warned both times
        result = zapvet("org", "apply", str(cloud), env=env)
        assert result.exit_code == 0, result.output
        assert "warning: no [[templates]] for appointment_reminder: on the Cloud API" in (
            result.stderr
        )
    assert "up to date" in result.stdout


@pytest.mark.slow
def test_the_embedded_servers_serve_a_fresh_machine(server_root: Path) -> None:
    """The console script itself, starting and stopping embedded servers for each command."""
    env = {"ZAPVET_DATA_DIR": str(server_root / "data")}
    upgraded = entrypoint("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    applied = entrypoint("org", "apply", str(EXAMPLE_ORG), env=env)
    assert applied.returncode == 0, applied.stderr
    status = entrypoint("status", env=env)
    assert status.returncode == 0, status.stderr
    assert "PostgreSQL (embedded)" in status.stdout and "Redis      (embedded)" in status.stdout
    assert "organization 'petfeliz'" in status.stdout
    assert "stopped as this command ended" in status.stdout
