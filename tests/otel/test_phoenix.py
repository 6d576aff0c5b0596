"""Opt-in: `zapvet demo` traces land in Arize Phoenix, one trace per message, every step in it.

Skipped unless Phoenix is installed (ZAPVET_PHOENIX_BIN, .venv-phoenix/bin/phoenix or
`phoenix` on PATH): it is an 850 MB separate install, see README "Looking at a trace".
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from zapvet.embedded import ServiceUrls
from zapvet.otel.phoenix import PhoenixServer, find_phoenix

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_phoenix() is None, reason="Arize Phoenix is not installed"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spans(phoenix: PhoenixServer, project: str) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        response = httpx.get(
            f"{phoenix.url}/v1/projects/{project}/spans", params=params, timeout=30
        )
        if response.status_code == 404:
            return []  # the project appears with its first spans
        response.raise_for_status()
        body = response.json()
        spans += body["data"]
        cursor = body.get("next_cursor")
        if not cursor:
            return spans


def test_the_demo_is_one_trace_per_message_in_phoenix(
    tmp_path: Path, services: ServiceUrls
) -> None:
    project = f"zapvet-test-{uuid.uuid4().hex[:8]}"
    with PhoenixServer(working_dir=tmp_path / "phoenix", port=_free_port()) as phoenix:
        env = {
            **os.environ,
            "DATABASE_URL": services.database_url,
            "REDIS_URL": services.redis_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.url,
            "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
        }
        demo = subprocess.run(
            [sys.executable, "-m", "zapvet", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert demo.returncode == 0, demo.stderr[-2000:]
        deadline = time.monotonic() + 30
        traces: dict[str, set[str]] = defaultdict(set)
        while time.monotonic() < deadline:
            traces.clear()
            for span in _spans(phoenix, project):
                traces[span["context"]["trace_id"]].add(span["name"])
            if sum("send evolution" in names for names in traces.values()) == 3:
                break
            time.sleep(0.5)

    messages = [
        names for names in traces.values() if "POST /webhooks/evolution/{instance}" in names
    ]
    assert len(messages) == 3
    steps = {
        "ingest evolution",
        "send inbound",
        "process inbound",
        "route",
        "invoke_agent client",
        "node prepare",
        "node agent",
        "node finalize",
        "send evolution",
    }
    for names in messages:
        assert steps <= names, steps - names
        assert any(name.startswith("chat ") for name in names)  # chat <the org's model>
        assert any(name.startswith(("SELECT", "INSERT", "UPDATE")) for name in names)
        assert names & {"EVALSHA", "EVAL", "LPUSH", "RPUSH", "ZADD", "HINCRBY", "HSET"}  # Redis
    assert any(any(name.startswith("execute_tool ") for name in names) for names in messages)
