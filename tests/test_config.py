"""Settings come from the environment and ./.env; a bad value names its variable at start."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import AliasChoices

from tests.conftest import REPO
from zapvet.config import Settings, load_settings
from zapvet.errors import ConfigError

ALL_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "ZAPVET_DATA_DIR",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ZAPVET_MODEL",
    "ZAPVET_LOG_FORMAT",
    "ZAPVET_CAPTURE_CONTENT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No zapvet variable set, and a working directory without a developer's .env."""
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_match_the_design() -> None:
    settings = load_settings()
    assert settings.database_url is None and settings.redis_url is None
    assert str(settings.data_dir) == ".zapvet"
    assert settings.model == "gpt-4o-mini"
    assert settings.capture_content is False
    assert settings.openai_api_key is None
    assert settings.otel_endpoint is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgresql://u@db/app", "postgresql+psycopg://u@db/app"),
        ("postgresql+psycopg://u@db/app", "postgresql+psycopg://u@db/app"),
        (
            "postgresql://postgres@/zapvet?host=/run/pg",
            "postgresql+psycopg://postgres@/zapvet?host=/run/pg",
        ),
    ],
)
def test_database_url_spellings_are_normalised(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    assert load_settings().database_url == expected


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("DATABASE_URL", "mysql://root@db/app", "PostgreSQL URL"),
        ("REDIS_URL", "http://cache:6379", "redis://"),
        ("ZAPVET_LOG_FORMAT", "xml", "'json' or 'console'"),
        ("ZAPVET_CAPTURE_CONTENT", "maybe", "true or false"),
        ("OPENAI_BASE_URL", "ftp://models", "http"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", "http"),
        ("ZAPVET_MODEL", "", "at least 1 character"),
    ],
)
def test_invalid_values_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert fragment in str(caught.value)


def test_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "unix:///run/redis.sock")
    monkeypatch.setenv("ZAPVET_DATA_DIR", "/var/lib/zapvet")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ZAPVET_MODEL", "gpt-4.1-mini")
    monkeypatch.setenv("ZAPVET_LOG_FORMAT", "JSON")
    monkeypatch.setenv("ZAPVET_CAPTURE_CONTENT", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:6006")
    settings = load_settings()
    assert settings.redis_url == "unix:///run/redis.sock"
    assert str(settings.data_dir) == "/var/lib/zapvet"
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-test"
    assert "sk-test" not in repr(settings)
    assert settings.model == "gpt-4.1-mini"
    assert settings.effective_log_format == "json"
    assert settings.capture_content is True
    assert settings.otel_endpoint == "http://127.0.0.1:6006"


def test_blank_urls_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("REDIS_URL", "  ")
    settings = load_settings()
    assert settings.database_url is None and settings.redis_url is None


def test_log_format_defaults_to_json_without_a_terminal() -> None:
    # pytest captures stderr, so it is not a TTY here.
    assert load_settings().effective_log_format == "json"


def test_a_blank_api_key_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "")
    assert load_settings().openai_api_key is None


def test_a_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# a comment\nOPENAI_API_KEY=sk-from-dotenv\nZAPVET_MODEL='gpt-4.1-mini'\n"
        "SOMETHING_ELSE=ignored\n"
    )
    settings = load_settings()
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-from-dotenv"
    assert settings.model == "gpt-4.1-mini"


def test_the_environment_wins_over_the_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv\nZAPVET_MODEL=gpt-4.1-mini\n")
    monkeypatch.setenv("ZAPVET_MODEL", "gpt-4o")
    monkeypatch.setenv("OPENAI_API_KEY", "")  # set but blank: still the environment's word
    settings = load_settings()
    assert settings.model == "gpt-4o"
    assert settings.openai_api_key is None


def test_only_the_working_directory_dotenv_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ZAPVET_MODEL=gpt-4.1-mini\n")
    (tmp_path / "elsewhere").mkdir()
    assert load_settings().model == "gpt-4.1-mini"
    os.chdir(tmp_path / "elsewhere")  # restored by the fixture's monkeypatch.chdir
    assert load_settings().model == "gpt-4o-mini"


def test_a_bad_value_in_dotenv_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ZAPVET_LOG_FORMAT=xml\n")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == "ZAPVET_LOG_FORMAT"


def test_opentelemetry_variables_are_not_taken_from_dotenv(tmp_path: Path) -> None:
    # The OpenTelemetry SDK reads them from the process environment only: taking the
    # endpoint from .env would switch tracing on towards the SDK's default endpoint.
    (tmp_path / ".env").write_text(
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318\nOTEL_SDK_DISABLED=true\n"
    )
    settings = load_settings()
    assert settings.otel_endpoint is None
    assert settings.otel_sdk_disabled is False


EXAMPLE_LINE = re.compile(r"^# ([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)


def _variables() -> set[str]:
    """Every environment variable `Settings` reads."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
    return names


def test_the_dotenv_example_names_every_setting() -> None:
    example = (REPO / ".env.example").read_text()
    named = {name for name, _ in EXAMPLE_LINE.findall(example)}
    zapvet_own = {name for name in _variables() if not name.startswith("OTEL_")}
    assert zapvet_own <= named, zapvet_own - named
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in example  # named where it says where to set it
    readme = (REPO / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    in_table = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert in_table <= named, f"in the README's table but not in .env.example: {in_table - named}"


def test_the_dotenv_example_values_are_valid_settings(tmp_path: Path) -> None:
    example = (REPO / ".env.example").read_text()
    uncommented = "\n".join(f"{name}={value}" for name, value in EXAMPLE_LINE.findall(example))
    (tmp_path / ".env").write_text(uncommented)
    settings = load_settings()  # raises ConfigError if an example value is invalid
    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1:5432/zapvet"
    assert settings.worker_threads == 256
