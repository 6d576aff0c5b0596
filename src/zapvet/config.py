"""Settings: the only place zapvet reads its environment.

Entrypoints call `load_settings()` once and pass the result down. Values come from the
environment, then from a `.env` file in the working directory (the environment wins). A bad
value fails at start with a `ConfigError` naming the variable, never later in a turn.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from zapvet.errors import ConfigError

LogFormat = Literal["json", "console"]

_POSTGRES_SCHEMES = {"postgresql+psycopg", "postgresql", "postgres", "postgresql+psycopg2"}
_REDIS_SCHEMES = {"redis", "rediss", "unix"}


#: Read from the working directory of the command, like docker compose does.
ENV_FILE = ".env"


class _DotEnvWithoutOtel(DotEnvSettingsSource):
    """`.env` minus the OTEL_* variables.

    The OpenTelemetry SDK reads those from the process environment itself (exporter, sampler,
    service name); taking them from `.env` here would switch tracing on while the exporter
    it builds still points at its default endpoint.
    """

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in super().__call__().items() if not k.upper().startswith("OTEL_")}


class Settings(BaseSettings):
    """Process settings, read from the environment and `.env` (DESIGN §2)."""

    model_config = SettingsConfigDict(
        extra="ignore",
        populate_by_name=True,
        frozen=True,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
    )

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    data_dir: Path = Field(default=Path(".zapvet"), validation_alias="ZAPVET_DATA_DIR")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    model: str = Field(default="gpt-4o-mini", min_length=1, validation_alias="ZAPVET_MODEL")
    log_format: LogFormat | None = Field(default=None, validation_alias="ZAPVET_LOG_FORMAT")
    capture_content: bool = Field(default=False, validation_alias="ZAPVET_CAPTURE_CONTENT")
    otel_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")
    queue_namespace: str = Field(
        default="zapvet",
        pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        validation_alias="ZAPVET_QUEUE_NAMESPACE",
    )
    worker_processes: int = Field(
        default=1, ge=1, le=64, validation_alias="ZAPVET_WORKER_PROCESSES"
    )
    # Each LLM turn in flight holds a thread: 256 lets one process wait on 200+ model calls
    # (DESIGN §9; docs/benchmarks.md measured 32 → 32 and 64 → 64 turns in flight).
    worker_threads: int = Field(
        default=256, ge=1, le=1024, validation_alias="ZAPVET_WORKER_THREADS"
    )
    # While other organizations wait, what one may hold (queue.fairness): turns in flight
    # in one worker process, and across every worker. Alone, it may use every thread.
    org_turns_per_process: int = Field(
        default=32, ge=1, le=1024, validation_alias="ZAPVET_ORG_TURNS_PER_PROCESS"
    )
    org_turns_in_flight: int = Field(
        default=128, ge=1, le=1024, validation_alias="ZAPVET_ORG_TURNS_IN_FLIGHT"
    )
    transcribe_model: str = Field(
        default="gpt-4o-mini-transcribe", min_length=1, validation_alias="ZAPVET_TRANSCRIBE_MODEL"
    )
    # Byte limits per media kind, in MB (10^6 bytes): larger files are never downloaded.
    media_audio_max_mb: int = Field(default=16, gt=0, validation_alias="ZAPVET_MEDIA_AUDIO_MAX_MB")
    media_image_max_mb: int = Field(default=5, gt=0, validation_alias="ZAPVET_MEDIA_IMAGE_MAX_MB")
    media_document_max_mb: int = Field(
        default=100, gt=0, validation_alias="ZAPVET_MEDIA_DOCUMENT_MAX_MB"
    )
    media_video_max_mb: int = Field(default=16, gt=0, validation_alias="ZAPVET_MEDIA_VIDEO_MAX_MB")
    transcribe_max_minutes: int = Field(
        default=10, gt=0, validation_alias="ZAPVET_TRANSCRIBE_MAX_MINUTES"
    )
    media_timeout_seconds: float = Field(
        default=30.0, gt=0, validation_alias="ZAPVET_MEDIA_TIMEOUT_SECONDS"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then `.env`: the real environment wins."""
        dotenv = _DotEnvWithoutOtel(settings_cls)
        return (init_settings, env_settings, dotenv, file_secret_settings)

    @field_validator(
        "database_url",
        "redis_url",
        "openai_api_key",
        "openai_base_url",
        "otel_endpoint",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _normalise_log_format(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        return None if value is None else normalise_database_url(value)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in _REDIS_SCHEMES:
            raise ValueError(
                f"expected redis://, rediss:// or unix://, got {scheme or 'no'} scheme"
            )
        return value

    @field_validator("openai_base_url", "otel_endpoint")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("expected an http:// or https:// URL")
        return value

    @property
    def effective_log_format(self) -> LogFormat:
        """`console` on a terminal, `json` otherwise, unless set explicitly."""
        if self.log_format is not None:
            return self.log_format
        return "console" if sys.stderr.isatty() else "json"


def normalise_database_url(url: str) -> str:
    """Return `url` with the psycopg 3 driver, accepting the common PostgreSQL spellings.

    Raises:
        ValueError: the URL is not a PostgreSQL URL.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _POSTGRES_SCHEMES:
        raise ValueError(
            f"expected a PostgreSQL URL (postgresql://user@host/db), got {scheme or 'no'} scheme"
        )
    return f"postgresql+psycopg://{rest}"


_ENV_NAMES: dict[str, str | tuple[str, ...]] = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "data_dir": "ZAPVET_DATA_DIR",
    "openai_api_key": "OPENAI_API_KEY",
    "openai_base_url": "OPENAI_BASE_URL",
    "model": "ZAPVET_MODEL",
    "log_format": "ZAPVET_LOG_FORMAT",
    "capture_content": "ZAPVET_CAPTURE_CONTENT",
    "otel_endpoint": ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    "otel_sdk_disabled": "OTEL_SDK_DISABLED",
    "queue_namespace": "ZAPVET_QUEUE_NAMESPACE",
    "worker_processes": "ZAPVET_WORKER_PROCESSES",
    "worker_threads": "ZAPVET_WORKER_THREADS",
    "org_turns_per_process": "ZAPVET_ORG_TURNS_PER_PROCESS",
    "org_turns_in_flight": "ZAPVET_ORG_TURNS_IN_FLIGHT",
    "transcribe_model": "ZAPVET_TRANSCRIBE_MODEL",
    "media_audio_max_mb": "ZAPVET_MEDIA_AUDIO_MAX_MB",
    "media_image_max_mb": "ZAPVET_MEDIA_IMAGE_MAX_MB",
    "media_document_max_mb": "ZAPVET_MEDIA_DOCUMENT_MAX_MB",
    "media_video_max_mb": "ZAPVET_MEDIA_VIDEO_MAX_MB",
    "transcribe_max_minutes": "ZAPVET_TRANSCRIBE_MAX_MINUTES",
    "media_timeout_seconds": "ZAPVET_MEDIA_TIMEOUT_SECONDS",
}


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and `./.env`; `overrides` (field names) win.

    Raises:
        ConfigError: naming the first invalid variable and why.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = str(error["loc"][0]) if error["loc"] else ""
        field = next((f for f, n in _ENV_NAMES.items() if loc == f or loc in n), loc)
        names = _ENV_NAMES.get(field, loc.upper())
        if isinstance(names, tuple):  # several spellings: name the one that is set
            names = next((name for name in names if os.environ.get(name)), names[-1])
        variable = names
        reason = error["msg"].removeprefix("Value error, ")
        if error["type"] == "literal_error" and variable == "ZAPVET_LOG_FORMAT":
            reason = f"must be 'json' or 'console', got {error['input']!r}"
        elif error["type"] == "bool_parsing":
            reason = f"must be true or false, got {error['input']!r}"
        raise ConfigError(variable, reason) from None
