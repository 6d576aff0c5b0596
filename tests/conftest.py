"""Fixtures on real PostgreSQL and Redis.

`DATABASE_URL` / `REDIS_URL` are used when set; otherwise the embedded servers under
`ZAPVET_DATA_DIR` are started for the session. Each test that asks for `database_url` gets
a database of its own, cloned from a template migrated once per session, so tests may open
as many connections (and processes) as they like and still never see each other's rows.
"""

from __future__ import annotations

import itertools
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psutil
import psycopg
import pytest
import structlog
from click.testing import Result
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, event
from sqlmodel import Session, select
from typer.testing import CliRunner

from tests.databases import Clones
from zapvet import db
from zapvet.cli import app
from zapvet.config import Settings, load_settings
from zapvet.embedded import ServiceUrls, running_services
from zapvet.models import AuroraOwnerNumber, Contact, Conversation, Organization
from zapvet.org import apply_spec, load_spec, parse_spec
from zapvet.tools.context import AuroraContext, ClientContext
from zapvet.tools.deps import ToolDeps

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_ORG = REPO / "examples" / "petfeliz.toml"
_counter = itertools.count()

#: `pytest --hypothesis-profile=thorough`: four times the examples of the default profile,
#: for the searches whose default is kept short to fit the suite's time (test_booking.py).
hypothesis_settings.register_profile("thorough", max_examples=400)


with_database = db.with_database
libpq_url = db.libpq_url


def zapvet(*args: str, env: Mapping[str, str]) -> Result:
    """`zapvet ARGS` run in this process, with `env` (and no other servers) in the environment.

    The command sets up logging for itself, onto the runner's captured stderr; that is undone
    afterwards so that later tests log as before. `main()`'s signal and error handling are not
    run: the slow tests that start the real entrypoint cover them.
    """
    root = logging.getLogger()
    handlers, level, structlog_config = root.handlers[:], root.level, structlog.get_config()
    try:
        return CliRunner().invoke(
            app, list(args), env={"DATABASE_URL": None, "REDIS_URL": None, **env}
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**structlog_config)


#: What the running test started, while the test is not marked slow (see `_fast`).
_started: list[str] | None = None
_SPAWNS = {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec"}


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _started is not None and event in _SPAWNS:
        _started.append(f"{event} {args[:2]}")


def pytest_configure(config: pytest.Config) -> None:
    platform.processor()  # the OpenAI client asks, and it runs `uname -p` once per process
    sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _fast(request: pytest.FixtureRequest) -> Iterator[None]:
    """The fast lane (`-m "not slow"`) starts no process: a test that does must say so.

    Servers shared by the session (the embedded PostgreSQL and Redis) start before this.
    """
    global _started
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    _started = started = []
    try:
        yield
    finally:
        _started = None
    assert not started, f"this test starts processes, so mark it @pytest.mark.slow: {started}"


@pytest.fixture
def server_root() -> Iterator[Path]:
    """A directory for servers of their own, outside pytest's basetemp.

    Run as root, PostgreSQL runs as another user, who must be able to reach its data. Every
    pytest session that starts resets `/tmp/pytest-of-root` to mode 0700, so a second
    session on the machine (a developer's, a helper's) would lock the server out of a
    `tmp_path` mid-test: seen as "pg_ctl: could not access directory … Permission denied".
    """
    path = Path(tempfile.mkdtemp(prefix="zapvet-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def services(settings: Settings) -> Iterator[ServiceUrls]:
    with running_services(settings) as urls:
        yield urls


@pytest.fixture(scope="session")
def admin_conninfo(services: ServiceUrls) -> str:
    return libpq_url(with_database(services.database_url, "postgres"))


def _drop_orphans(conninfo: str) -> None:
    """Drop test databases left by killed test runs (their pid is gone)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'zapvet\\_t%\\_%'"
        ).fetchall()
        for (name,) in rows:
            parts = name.split("_")
            if len(parts) >= 3 and parts[2].isdigit() and not psutil.pid_exists(int(parts[2])):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def template_database(services: ServiceUrls, admin_conninfo: str) -> Iterator[str]:
    """Name of a database migrated to head, cloned by `database_url`."""
    _drop_orphans(admin_conninfo)
    name = f"zapvet_tpl_{os.getpid()}"
    with db.scratch_database(services.database_url, name):
        yield name


@pytest.fixture(scope="session")
def clones(services: ServiceUrls, template_database: str) -> Iterator[Clones]:
    clones = Clones(services.database_url, template_database)
    yield clones
    clones.close()


@pytest.fixture
def database_url(clones: Clones) -> Iterator[str]:
    """A fresh database at the newest schema, for this test only."""
    name, url = clones.take()
    yield url
    clones.give_back(name)


@pytest.fixture
def empty_database_url(services: ServiceUrls) -> Iterator[str]:
    """A fresh database with no schema at all, for migration tests."""
    name = f"zapvet_t_{os.getpid()}_empty_{next(_counter)}"
    yield db.create_database(services.database_url, name)
    db.drop_database(services.database_url, name)


@pytest.fixture
def statements(database_url: str) -> Iterator[list[str]]:
    """Every SQL statement this test's database runs from now on (any engine, any thread)."""
    seen: list[str] = []
    lock = threading.Lock()
    name = database_url.rsplit("/", 1)[-1].split("?")[0]

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if conn.engine.url.database == name:
            with lock:
                seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.build_engine(database_url, pool_size=5)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- agents ---------------------------------------------------------------------------------

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
#: Wednesday 25 November 2026, 14:00 in São Paulo: "amanhã" is Thursday the 26th.
NOW = datetime(2026, 11, 25, 14, 0, tzinfo=SAO_PAULO)


@pytest.fixture
def petfeliz(session: Session) -> Organization:
    report = apply_spec(session, load_spec(EXAMPLE_ORG))
    session.commit()
    org = session.get(Organization, report.organization_id)
    assert org is not None
    return org


def second_shop(session: Session) -> Organization:
    """The example shop again as "outra" (same catalogue, same owner phone): a second tenant."""
    spec = parse_spec(
        EXAMPLE_ORG.read_text()
        .replace('slug = "petfeliz"', 'slug = "outra"')
        .replace('instance = "petfeliz"', 'instance = "outra"')
    )
    org = session.get(Organization, apply_spec(session, spec).organization_id)
    session.commit()
    assert org is not None
    return org


def start_conversation(session: Session, org: Organization, phone: str) -> ClientContext:
    assert org.id is not None
    contact = Contact(organization_id=org.id, phone=phone, name="Cliente")
    session.add(contact)
    session.flush()
    assert contact.id is not None
    conversation = Conversation(organization_id=org.id, contact_id=contact.id)
    session.add(conversation)
    session.commit()
    assert conversation.id is not None
    return ClientContext(
        organization_id=org.id, contact_id=contact.id, conversation_id=conversation.id
    )


@pytest.fixture
def client_context(session: Session, petfeliz: Organization) -> ClientContext:
    return start_conversation(session, petfeliz, "5511999999999")


@pytest.fixture
async def deps(database_url: str) -> AsyncIterator[ToolDeps]:
    engine = db.build_async_engine(database_url, pool_size=5)
    yield ToolDeps(sessions=db.async_session_maker(engine), clock=lambda: NOW)
    await engine.dispose()


@pytest.fixture
def owner(session: Session, petfeliz: Organization) -> AuroraContext:
    number = session.exec(select(AuroraOwnerNumber)).one()
    assert petfeliz.id and number.id
    contact = Contact(organization_id=petfeliz.id, phone=number.phone, name=number.name)
    session.add(contact)
    session.flush()
    conversation = Conversation(organization_id=petfeliz.id, contact_id=contact.id or 0)
    session.add(conversation)
    session.commit()
    return AuroraContext(
        organization_id=petfeliz.id,
        owner_number_id=number.id,
        contact_id=contact.id or 0,
        conversation_id=conversation.id or 0,
    )
