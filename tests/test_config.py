"""Settings come from the environment; a bad value names its variable at start."""

from __future__ import annotations

import pytest

from zapvet.config import load_settings
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
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


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
