"""Alembic environment: migrates the database named by the caller, or by the settings."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import zapvet.models  # noqa: F401  (registers every table on the metadata)
from zapvet.config import load_settings
from zapvet.db import build_engine
from zapvet.embedded import running_services

target_metadata = SQLModel.metadata


def _render_item(type_: str, obj: Any, _autogen_context: Any) -> str | Literal[False]:
    """Render SQLModel's AutoString as plain sa.String, so migrations need no sqlmodel."""
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length!r})"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        render_item=_render_item,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if url:
        _migrate_url(url)
        return
    with running_services(load_settings()) as services:
        _migrate_url(services.database_url)


def _migrate_url(url: str) -> None:
    engine = build_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url") or "postgresql+psycopg://",
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    _run_online()
