"""Dramatiq middleware of our own: poison guard, per-job log context, lifecycle, event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import redis
import structlog
from dramatiq.asyncio import EventLoopThread, set_event_loop_thread
from dramatiq.middleware import AsyncIO, SkipMessage

from zapvet.logging import bind_job, get_logger

log = get_logger("zapvet.queue")


class PoisonGuard(dramatiq.Middleware):
    """Dead-letter a message delivered more than `max_deliveries` times at one retry count.

    A message that kills its worker (OOM, segfault, SIGKILL) is redelivered without its
    retry count changing, forever (dramatiq #213); counting deliveries in Redis stops it.
    """

    def __init__(self, client: redis.Redis, namespace: str, max_deliveries: int = 5) -> None:
        self.client = client
        self.namespace = namespace
        self.max_deliveries = max_deliveries

    def before_process_message(self, broker: Any, message: Any) -> None:
        retries = message.options.get("retries", 0)
        key = f"{self.namespace}:deliveries:{message.message_id}:{retries}"
        try:
            deliveries = int(self.client.incr(key))
            if deliveries == 1:  # the key is new: it lives a day (one call, not two, per job)
                self.client.expire(key, 86_400)
        except redis.RedisError:
            return  # never block work because the guard's own bookkeeping failed
        if deliveries > self.max_deliveries:
            log.error(
                "poison message dead-lettered",
                actor=message.actor_name,
                message_id=message.message_id,
                deliveries=deliveries,
            )
            message.fail()
            raise SkipMessage(f"delivered {deliveries} times")


class LogContext(dramatiq.Middleware):
    """Each job logs with its own jobId and nothing left over from the thread's last job."""

    def before_process_message(self, broker: Any, message: Any) -> None:
        bind_job(message.message_id)

    def after_process_message(
        self,
        broker: Any,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        structlog.contextvars.clear_contextvars()

    after_skip_message = after_process_message


class Lifecycle(dramatiq.Middleware):
    """Run `on_shutdown` (close pools, flush spans) before the worker's event loop stops."""

    def __init__(self, on_shutdown: Callable[[], None]) -> None:
        self.on_shutdown = on_shutdown

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        try:
            self.on_shutdown()
        except Exception:  # shutting down anyway; say why it was not clean
            log.exception("worker shutdown hook failed")


class DaemonAsyncIO(AsyncIO):
    """Dramatiq's AsyncIO middleware with its event-loop thread marked daemon.

    Dramatiq's loop thread is not a daemon and is stopped only by `after_worker_shutdown`. A
    second SIGTERM (systemd's control-group kill, or `kill` on the process group, on top of
    the one the dramatiq parent forwards) makes the worker process `sys.exit` before that
    hook runs, and the interpreter then waited on the loop thread forever. Marked daemon, the
    process exits: spans flush at exit, and unacknowledged messages return to the queue once
    the heartbeat lapses.
    """

    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        thread = EventLoopThread(self.logger)
        thread.daemon = True
        thread.start(timeout=1.0)
        set_event_loop_thread(thread)
