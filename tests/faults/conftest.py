"""Fixtures for fault tests: servers of the test's own to restart, a fake model, a stack."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.conftest import EXAMPLE_ORG
from tests.faults.harness import PrivatePostgres, PrivateRedis, echo_reply
from tests.pipeline.conftest import echo
from tests.pipeline.support import purge
from zapvet import db
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.testing.openai_server import FakeOpenAIServer
from zapvet.testing.stack import LocalStack


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis nobody else uses, so the test may stop it and lose its contents."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[tuple[PrivatePostgres, str]]:
    """A migrated PostgreSQL cluster nobody else uses, and its URL, to restart mid-run.

    Not under pytest's tmp_path: as root the server runs as another user, and every pytest
    session (a colleague's too) resets /tmp/pytest-of-root to 0700 under it.
    """
    root = Path(tempfile.mkdtemp(prefix="zapvet-faults-pg-"))
    root.chmod(0o755)
    server = PrivatePostgres(root)
    try:
        url = server.start_migrated()
        yield server, url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def echo_model() -> Iterator[FakeOpenAIServer]:
    """An OpenAI-compatible server answering every turn with the texts it addresses."""
    with FakeOpenAIServer(responder=echo_reply) as server:
        yield server


def local_stack(database_url: str, redis_url: str, **options: object) -> LocalStack:
    """The in-process pipeline on these servers, echo model, no debounce."""
    settings: dict[str, object] = {
        "model": ScriptedChatModel(responder=echo),
        "debounce_seconds": 0,
        **options,
    }
    return LocalStack(
        database_url=database_url,
        redis_url=redis_url,
        org_text=EXAMPLE_ORG.read_text(),
        **settings,  # type: ignore[arg-type]
    )


@pytest.fixture
def shared_stack(database_url: str, services: ServiceUrls) -> Iterator[LocalStack]:
    """The in-process pipeline on the session's servers (for faults outside the servers)."""
    stack = local_stack(database_url, services.redis_url)
    with stack:
        yield stack
    purge(services.redis_url, stack.namespace)


def engine_for(url: str) -> Iterator[Engine]:
    engine = db.build_engine(url, pool_size=2)
    yield engine
    engine.dispose()
