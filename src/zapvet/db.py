"""Database engines and sessions (SQLModel on psycopg 3), built by entrypoints, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVarTuple

from sqlalchemy import Engine, Row, Select, create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.config import normalise_database_url


def build_engine(database_url: str, *, pool_size: int = 5, **kwargs: Any) -> Engine:
    """A synchronous engine (CLI commands, migrations, scheduler)."""
    return create_engine(
        normalise_database_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        **kwargs,
    )


def build_async_engine(database_url: str, *, pool_size: int = 10, **kwargs: Any) -> AsyncEngine:
    """An asyncio engine (bridge, worker, agent tools).

    Size the pool to the concurrency: a pool smaller than the number of concurrent users
    gives second-long tail latencies (research/perf-floors.md §2).

    No pre-ping: it cost a round trip on every checkout (a third of a turn's statements).
    A connection PostgreSQL dropped fails its next statement instead; SQLAlchemy then
    discards every pooled connection older than the failure, and the caller retries once
    (a drain through its job's retry, a webhook through `retry_once` or the gateway's retry).
    """
    return create_async_engine(
        normalise_database_url(database_url),
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        **kwargs,
    )


def session_maker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, class_=Session, expire_on_commit=False)


def async_session_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session inside one transaction: committed on success, rolled back on error."""
    with factory() as session, session.begin():
        yield session


@asynccontextmanager
async def async_transaction(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """The asyncio twin of `transaction`."""
    async with factory() as session, session.begin():
        yield session


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer `SELECT 1`."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def alembic_config(database_url: str) -> Any:
    """An Alembic config for the packaged migrations; needs no alembic.ini."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "zapvet:migrations")
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Run the migrations up to `revision` (default: the newest)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("postgresql+psycopg://")).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_to_base(database_url: str) -> None:
    """Undo every migration (tests and disaster drills only)."""
    from alembic import command

    command.downgrade(alembic_config(database_url), "base")


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` on the same server."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL as a libpq connection string for plain psycopg."""
    from sqlalchemy.engine import make_url

    plain = make_url(normalise_database_url(url)).set(drivername="postgresql")
    return plain.render_as_string(hide_password=False)


def create_database(server_url: str, name: str, *, template: str | None = None) -> str:
    """Create database `name` (optionally cloned from `template`) and return its URL."""
    import psycopg

    clause = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(libpq_url(with_database(server_url, "postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"{clause}')
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(libpq_url(with_database(server_url, "postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    """A freshly migrated database for the duration of the block, dropped afterwards."""
    url = create_database(server_url, name)
    try:
        upgrade(url)
        yield url
    finally:
        drop_database(server_url, name)


_Columns = TypeVarTuple("_Columns")


async def rows(
    session: AsyncSession, statement: Select[*_Columns], params: dict[str, Any] | None = None
) -> list[Row[*_Columns]]:
    """All rows of a plain SQLAlchemy select (aggregates, many columns), with the values of
    its bound parameters.

    SQLModel's `exec` runs these fine but is typed for selects of at most four entities.
    """
    result = await session.exec(statement, params=params)  # type: ignore[call-overload]
    return list(result.all())
