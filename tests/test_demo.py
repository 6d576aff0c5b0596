"""`zapvet demo` replays the Rex conversation through the real pipeline and reports it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zapvet.embedded import ServiceUrls


@pytest.mark.slow
def test_demo_books_rex_through_the_pipeline(services: ServiceUrls) -> None:
    env = {**os.environ, "DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url}
    result = subprocess.run(
        [sys.executable, "-m", "zapvet", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "👤 Cliente: Olá! Quero agendar uma consulta para meu cachorro Rex." in out
    assert "Valor: R$ 120,00" in out
    assert "Time per stage (ms)" in out and out.count("  message ") == 3
    assert "Rex: cachorro, Golden Retriever, 3 anos" in out
    booked = "Consulta Veterinária Geral on 2026-11-26 10:00 with Dra. Ana, scheduled, R$ 120,00"
    assert booked in out
    assert "incoming processed: 3" in out and "outgoing sent: 3" in out
