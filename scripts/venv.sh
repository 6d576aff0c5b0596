#!/usr/bin/env bash
# Sourced by the other scripts: make .venv (Python 3.11 to 3.14, as requires-python in
# pyproject.toml says) and install zapvet into it, again only when pyproject.toml changed
# since the last install.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 14))' 2>/dev/null; then
  echo "error: zapvet needs Python 3.11 to 3.14 as \$PYTHON (now: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setting up .venv ..." >&2
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.zapvet-install"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
  echo "installing zapvet and its dependencies into .venv (first run takes a minute) ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' >&2
  echo "$wanted" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
