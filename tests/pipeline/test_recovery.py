"""Nothing is lost: a flushed Redis and a worker killed mid-turn are recovered, answered once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
import redis
from sqlalchemy import Engine

from tests.conftest import EXAMPLE_ORG
from tests.pipeline.conftest import scalar
from zapvet import db
from zapvet.embedded import ServiceUrls
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.queue.drain import Enqueue
from zapvet.queue.scheduler import SWEEP_AFTER, TickReport, tick
from zapvet.testing.openai_server import FakeOpenAIServer, Reply
from zapvet.testing.stack import LocalStack


def sweep(database_url: str, enqueue: Enqueue) -> TickReport:
    """One scheduler tick, as if SWEEP_AFTER had passed since the messages arrived."""

    async def run() -> TickReport:
        engine = db.build_async_engine(database_url, pool_size=2)
        try:
            now = datetime.now(UTC) + SWEEP_AFTER + timedelta(seconds=1)
            return await tick(db.async_session_maker(engine), enqueue, now)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def pending(engine: Engine) -> int:
    sql = "SELECT count(*) FROM messages WHERE direction='incoming' AND status='pending'"
    return int(scalar(engine, sql) or 0)  # type: ignore[arg-type]


@pytest.mark.slow  # the whole pipeline
def test_a_flushed_redis_loses_no_message(
    stack: LocalStack, engine: Engine, services: ServiceUrls
) -> None:
    stack.stop_worker()
    for phone in ("5511911110001", "5511911110002", "5511911110003"):
        stack.say(phone, "Oi, alguém aí?")
    client = redis.Redis.from_url(services.redis_url)
    lost = list(client.scan_iter(match=f"{stack.namespace}:*"))
    assert lost  # the drains were queued …
    client.delete(*lost)  # … and now Redis forgot them
    client.close()
    stack.start_worker()
    assert sweep(stack.database_url, stack.queue).drains == 3
    stack.wait(lambda: len(stack.gateway.sent) == 3, what="every conversation to be answered")
    assert pending(engine) == 0


@pytest.fixture
def slow_model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(
        responder=lambda _: Reply(text="Olá! Como posso ajudar?"), latency=3
    ) as server:
        yield server


def spawn_worker(
    stack: LocalStack, model_url: str, *, log: Path | None = None, **extra_env: str
) -> subprocess.Popen[bytes]:
    """`zapvet worker` on `stack`'s queues, in its own group (dramatiq replaces the CLI).

    Its log lines (JSON) go to `log` if given.
    """
    env = {
        **os.environ,
        "DATABASE_URL": stack.database_url,
        "REDIS_URL": stack.redis_url,
        "ZAPVET_QUEUE_NAMESPACE": stack.namespace,
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": model_url,
        "ZAPVET_LOG_FORMAT": "json",
        "dramatiq_worker_timeout": "100",
        **extra_env,
    }
    command = [
        sys.executable, "-m", "zapvet.cli", "worker",
        "--processes", "1", "--threads", "4", "--shutdown-timeout", "5",
    ]  # fmt: skip
    with log.open("ab") if log is not None else open(os.devnull, "wb") as stderr:
        return subprocess.Popen(
            command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr
        )


@pytest.mark.slow
def test_a_worker_killed_mid_turn_is_recovered_and_answers_once(
    database_url: str, services: ServiceUrls, slow_model: FakeOpenAIServer, engine: Engine
) -> None:
    stack = LocalStack(
        database_url=database_url,
        redis_url=services.redis_url,
        model=ScriptedChatModel(),  # unused: the workers run in their own processes
        org_text=EXAMPLE_ORG.read_text(),
        debounce_seconds=0,
        worker=False,
    )
    with stack:
        first = spawn_worker(stack, slow_model.base_url)
        second: subprocess.Popen[bytes] | None = None
        left: list[psutil.Process] = []
        try:
            stack.say("5511977776666", "Oi, quero marcar um banho")
            stack.wait(lambda: slow_model.in_flight >= 1, what="the turn to reach the model")
            os.killpg(first.pid, signal.SIGKILL)  # the whole container dies at once
            first.wait(timeout=30)
            second = spawn_worker(stack, slow_model.base_url)
            # The killed worker's lock died with its connection, so the sweeper may take over.
            stack.wait(
                lambda: sweep(stack.database_url, stack.queue).drains >= 1 or pending(engine) == 0,
                what="the sweeper to re-enqueue the conversation",
            )
            stack.wait(lambda: len(stack.gateway.sent) == 1, what="the answer after recovery")
            stack.wait(
                lambda: (
                    scalar(engine, "SELECT status FROM messages WHERE direction='outgoing'")
                    == "sent"
                ),
                what="the reply to be recorded",
            )
            dramatiq = psutil.Process(second.pid)
            processes = [dramatiq, *dramatiq.children(recursive=True)]
            # A container stop signals PID 1 only: dramatiq's parent, which stops its worker
            # process with one SIGTERM. Signalling the whole group would reach the worker twice,
            # and dramatiq takes a second SIGTERM as "kill now", abandoning the turns in flight.
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0
            _, left = psutil.wait_procs(processes, timeout=30)
            assert not left, f"dramatiq exited and left {left}"
        finally:
            for worker in (first, second):
                if worker is not None and worker.returncode is None:
                    os.killpg(worker.pid, signal.SIGKILL)  # unreaped, so the group is still ours
                    worker.wait(timeout=30)
            for process in left:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
    assert [s.text for s in stack.gateway.sent] == ["Olá! Como posso ajudar?"]
    assert scalar(engine, "SELECT count(*) FROM messages WHERE direction='outgoing'") == 1
    assert len(slow_model.requests) >= 2  # the interrupted turn, then the recovered one
    client = redis.Redis.from_url(services.redis_url)
    for key in client.scan_iter(match=f"{stack.namespace}:*"):
        client.delete(key)
