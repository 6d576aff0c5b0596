"""Embedded PostgreSQL and Redis: start, share, stop with the last holder, survive kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from tests.conftest import libpq_url
from zapvet.config import Settings, load_settings
from zapvet.embedded import EmbeddedPostgres, EmbeddedRedis, running_services

pytestmark = pytest.mark.slow  # every test starts servers of its own, some other holders too


def _settings(data_dir: Path) -> Settings:
    # Explicit None beats DATABASE_URL / REDIS_URL from the environment.
    return load_settings(data_dir=data_dir, database_url=None, redis_url=None)


def _servers(data_dir: Path) -> tuple[EmbeddedPostgres, EmbeddedRedis]:
    return EmbeddedPostgres(data_dir / "postgres"), EmbeddedRedis(data_dir / "redis")


def _holder(data_dir: Path) -> subprocess.Popen[str]:
    """A separate process that attaches to the services and waits; prints READY."""
    code = textwrap.dedent(
        f"""
        import time
        from zapvet.config import load_settings
        from zapvet.embedded import running_services
        settings = load_settings(data_dir={str(data_dir)!r}, database_url=None, redis_url=None)
        with running_services(settings):
            print("READY", flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    return proc


def _use(database_url: str, redis_url: str) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("zapvet",)
    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    client.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_services_start_on_first_use_and_stop_when_the_last_holder_leaves(data_dir: Path) -> None:
    pg, rd = _servers(data_dir)
    with running_services(_settings(data_dir)) as urls:
        assert urls.embedded == ("postgres", "redis")
        _use(urls.database_url, urls.redis_url)
        with running_services(_settings(data_dir)) as again:  # nested: same servers
            assert again.database_url == urls.database_url
        assert pg.is_running() and rd.is_running()
    assert not pg.is_running() and not rd.is_running()


def test_data_survives_a_restart(data_dir: Path) -> None:
    with running_services(_settings(data_dir)) as urls:
        with psycopg.connect(libpq_url(urls.database_url), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        redis.Redis.from_url(urls.redis_url).set("kept", "yes")
    with running_services(_settings(data_dir)) as urls:
        with psycopg.connect(libpq_url(urls.database_url)) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
        assert redis.Redis.from_url(urls.redis_url).get("kept") == b"yes"


def test_a_second_process_shares_the_servers_until_it_leaves(data_dir: Path) -> None:
    pg, rd = _servers(data_dir)
    holder = _holder(data_dir)
    try:
        with running_services(_settings(data_dir)) as urls:
            _use(urls.database_url, urls.redis_url)
        assert pg.is_running() and rd.is_running()  # the other process still holds them
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=30)
    # SIGTERM killed the holder without cleanup: the next user prunes it and stops alone.
    with running_services(_settings(data_dir)) as urls:
        _use(urls.database_url, urls.redis_url)
    assert not pg.is_running() and not rd.is_running()


def test_a_killed_holder_does_not_keep_the_servers_forever(data_dir: Path) -> None:
    pg, rd = _servers(data_dir)
    holder = _holder(data_dir)
    holder.kill()
    holder.wait(timeout=10)
    assert pg.is_running()  # left behind by the killed process
    with running_services(_settings(data_dir)) as urls:
        _use(urls.database_url, urls.redis_url)
    assert not pg.is_running() and not rd.is_running()


def test_killed_servers_leave_stale_files_that_the_next_start_recovers_from(data_dir: Path) -> None:
    pg, rd = _servers(data_dir)
    holder = _holder(data_dir)
    server_pids = [p for p in (pg._postmaster_pid(), rd._pid()) if p]
    for pid in server_pids:
        os.kill(pid, signal.SIGKILL)
    holder.kill()
    holder.wait(timeout=10)
    for pid in server_pids:
        psutil.wait_procs([psutil.Process(pid)], timeout=10) if psutil.pid_exists(pid) else None
    assert (pg.pgdata / "postmaster.pid").exists() and rd.pid_file.exists()

    with running_services(_settings(data_dir)) as urls:
        _use(urls.database_url, urls.redis_url)
    assert not pg.is_running() and not rd.is_running()


def test_a_pid_file_naming_an_unrelated_live_process_is_stale(data_dir: Path) -> None:
    pg, rd = _servers(data_dir)
    with running_services(_settings(data_dir)):
        pass
    # A recycled pid: the file names a live process that is not our server.
    (pg.pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pg.pgdata}\n0\n5432\n\n\n\nready\n")
    rd.pid_file.write_text(str(os.getpid()))
    assert not pg.is_running() and not rd.is_running()
    with running_services(_settings(data_dir)) as urls:
        _use(urls.database_url, urls.redis_url)
    assert not pg.is_running() and not rd.is_running()
