"""A stand-in for dramatiq's two processes, for tests of how `zapvet dev` stops its worker.

`python -m tests.dramatiq_standin idle|busy` runs a parent and one worker child. As in
dramatiq, the parent answers its first SIGTERM by asking the child to stop, and forwards any
later one as a SIGTERM of its own ("kill now"). The child exits 0 when its parent asks and 1
on any SIGTERM, as dramatiq's worker process does on a second one; unlike dramatiq's, its
status is the same whether or not two signals arrive together, so a status of 1 means, every
time, that the worker was signalled twice or past its parent. A "busy" child has a turn in
flight that never ends. The parent prints "ready" once both run and "stopping" when asked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType


def say(line: str) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def child(mode: str) -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(1))
    say("ready")
    sys.stdin.readline()  # the parent's request to stop
    while mode == "busy":
        signal.pause()


def parent(mode: str) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.dramatiq_standin", mode, "child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert worker.stdin is not None and worker.stdout is not None
    asked = False

    def on_term(signum: int, _frame: FrameType | None) -> None:
        nonlocal asked
        if asked:
            worker.send_signal(signal.SIGTERM)
            return
        asked = True
        say("stopping")
        assert worker.stdin is not None
        worker.stdin.write(b"stop\n")
        worker.stdin.flush()

    signal.signal(signal.SIGTERM, on_term)
    assert worker.stdout.readline() == b"ready\n"
    say("ready")
    sys.exit(worker.wait())


if __name__ == "__main__":
    if sys.argv[2:] == ["child"]:
        child(sys.argv[1])
    else:
        parent(sys.argv[1])
