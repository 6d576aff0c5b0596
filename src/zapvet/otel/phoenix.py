"""Arize Phoenix as the local trace viewer: offline, bound to loopback, started on demand.

Phoenix is not a dependency of zapvet (about 850 MB, and it pins another OpenTelemetry
SDK), so it lives in its own virtualenv; `find_phoenix` looks for its `phoenix` command in
ZAPVET_PHOENIX_BIN, then `.venv-phoenix/bin/phoenix`, then PATH. `PhoenixServer` runs it
with every outbound request, telemetry and the agent's server-side shell switched off
(research/otel.md §9) and points this process's OTLP exporter at it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from zapvet.errors import PhoenixError as PhoenixError

DEFAULT_PORT = 6006
PROJECT = "zapvet"
#: Phoenix took 6.5–7.1 s to answer /healthz here; a cold disk can take longer.
START_TIMEOUT_S = 90.0
INSTALL_HINT = (
    "python3.11 -m venv .venv-phoenix && .venv-phoenix/bin/pip install arize-phoenix==20.26.1"
)


def find_phoenix() -> Path | None:
    """The `phoenix` command to run, or None when Phoenix is not installed."""
    candidates = [os.environ.get("ZAPVET_PHOENIX_BIN"), ".venv-phoenix/bin/phoenix"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    found = shutil.which("phoenix")
    return Path(found) if found else None


def _offline_environment(working_dir: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(working_dir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        # Phoenix binds gRPC on every interface; keep it off the standard 4317 at least.
        "PHOENIX_GRPC_PORT": str(port + 1),
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
        "PHOENIX_AGENTS_DISABLE_BASH": "true",
    }


@dataclass
class PhoenixServer:
    """`with PhoenixServer() as phoenix:` Phoenix listens on `phoenix.url` until the end."""

    working_dir: Path = Path(".zapvet/phoenix")
    port: int = DEFAULT_PORT
    project: str = PROJECT
    _process: subprocess.Popen[bytes] | None = field(init=False, default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = find_phoenix()
        if command is None:
            raise PhoenixError(f"Phoenix is not installed; install it with: {INSTALL_HINT}")
        self.working_dir.mkdir(parents=True, exist_ok=True)
        log = (self.working_dir / "serve.log").open("ab")
        self._process = subprocess.Popen(
            [str(command), "serve"],
            env=_offline_environment(self.working_dir.resolve(), self.port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PhoenixError(
                    f"Phoenix exited with status {self._process.returncode}; "
                    f"see {self.working_dir / 'serve.log'}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise PhoenixError(f"Phoenix did not answer on {self.url} in {START_TIMEOUT_S:.0f} s")

    def export_here(self) -> None:
        """Point this process's (and its children's) OTLP exporter at Phoenix."""
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.url
        os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
        attributes = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
        if "openinference.project.name" not in attributes:
            project = f"openinference.project.name={self.project}"
            os.environ["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(filter(None, [attributes, project]))

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
