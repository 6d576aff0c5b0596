"""`zapvet dev` runs the whole system; `zapvet chat` talks to it; Ctrl-C stops everything."""

from __future__ import annotations

import _thread
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import EXAMPLE_ORG, REPO
from zapvet.cli.dev import stop_worker
from zapvet.testing.openai_server import FakeOpenAIServer, Reply


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(url: str, process: subprocess.Popen[Any], why: Callable[[], str]) -> None:
    """Return once `url` answers 200; fail with `why()` if `process` dies or 120 s pass."""
    deadline = time.monotonic() + 120  # a hang guard only
    while True:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, why()
        time.sleep(0.3)


@pytest.mark.slow
def test_dev_and_chat_answer_and_stop_cleanly(tmp_path: Path, server_root: Path) -> None:
    gateway_port, bridge_port = free_port(), free_port()
    org = tmp_path / "org.toml"
    org.write_text(EXAMPLE_ORG.read_text().replace("127.0.0.1:8081", f"127.0.0.1:{gateway_port}"))
    with FakeOpenAIServer(
        responder=lambda _: Reply(text="Olá! Abrimos sábado das 08:00 às 13:00.")
    ) as llm:
        env = {
            **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
            "ZAPVET_DATA_DIR": str(server_root / "data"),
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": llm.base_url,
        }
        dev = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zapvet",
                "dev",
                "--port",
                str(bridge_port),
                "--org-file",
                str(org),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # As a script's background job starts it: SIGINT ignored. Ctrl-C must still stop it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        try:
            ready = f"http://127.0.0.1:{bridge_port}/readyz"
            wait_until_serving(ready, dev, lambda: "dev did not come up")
            children = psutil.Process(dev.pid).children(recursive=True)
            chat = subprocess.run(
                [sys.executable, "-m", "zapvet", "chat", "--org", "petfeliz",
                 "--bridge", f"http://127.0.0.1:{bridge_port}"],
                input="Oi, vocês abrem sábado?\n",
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert chat.returncode == 0, chat.stderr
            assert "Olá! Abrimos sábado das 08:00 às 13:00." in chat.stdout
        finally:
            dev.send_signal(signal.SIGINT)
            output, _ = dev.communicate(timeout=120)
    assert dev.returncode == 0, output
    assert "webhook (evolution): http://127.0.0.1:" in output
    assert "📤 to 5511912345678@s.whatsapp.net: Olá! Abrimos sábado" in output
    # The log lines (bridge and worker) name ids, never the customer's words or number.
    assert "[CLIENT-AI] Processing message" in output
    logs = [line for line in output.splitlines() if not line.startswith("📤")]
    assert not [line for line in logs if "Oi, vocês abrem" in line or "5511912345678" in line]
    psutil.wait_procs(children, timeout=30)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture
def standin(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[bytes]]:
    """A stand-in for dramatiq's processes (tests/dramatiq_standin.py), in their own group."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.dramatiq_standin", request.param],
        cwd=REPO,
        stdout=subprocess.PIPE,
        process_group=0,
    )
    assert worker.stdout is not None
    try:
        assert worker.stdout.readline() == b"ready\n"
        yield worker
    finally:
        if worker.returncode is None:
            os.killpg(worker.pid, signal.SIGKILL)  # unreaped, so the group is still ours
            worker.wait()


@pytest.mark.slow
@pytest.mark.parametrize("standin", ["idle"], indirect=True)
def test_dev_stops_its_worker_with_one_sigterm_to_dramatiqs_parent(
    standin: subprocess.Popen[bytes],
) -> None:
    stop_worker(standin)
    assert standin.returncode == 0  # the worker process was asked once, by its parent


@pytest.mark.slow
@pytest.mark.parametrize("standin", ["busy"], indirect=True)
def test_a_second_ctrl_c_kills_the_stopping_worker_instead_of_signalling_it_again(
    standin: subprocess.Popen[bytes],
) -> None:
    processes = [psutil.Process(standin.pid), *psutil.Process(standin.pid).children()]
    assert standin.stdout is not None
    stdout = standin.stdout

    def second_ctrl_c() -> None:
        if stdout.readline() == b"stopping\n":  # dev's stop reached dramatiq's parent
            _thread.interrupt_main()

    threading.Thread(target=second_ctrl_c, daemon=True).start()
    try:
        stop_worker(standin)
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C escaped the worker's stop: dev would exit under it")
    assert standin.returncode == -signal.SIGKILL
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert not alive
