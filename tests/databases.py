"""Fresh test databases, cloned from the migrated template ahead of need and dropped behind.

Cloning (CREATE DATABASE … TEMPLATE) and dropping take PostgreSQL from a tenth of a second
to a second each on a busy machine, for every test that asks for a database, while the
pytest process mostly waits. Threads do that work beside the tests instead: one keeps a
few clones ready, others drop the databases of finished tests. A test still gets a
database nobody has used, as before.

Dropping is the slower half: every DROP DATABASE waits for a forced checkpoint. Drops that
wait at the same time are served by one checkpoint, so DROPPERS of them run side by side.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading

from zapvet import db

#: Clones kept ready, and drops left pending: enough to cover a burst of short tests, few
#: enough that a lagging dropper holds tests back instead of piling up work for the end.
AHEAD = 3
#: Drops run at once; PostgreSQL serves drops that wait together with one checkpoint.
DROPPERS = 3


class Clones:
    """Databases cloned from `template` on the server of `server_url`, named for this pid."""

    def __init__(self, server_url: str, template: str) -> None:
        self.server_url, self.template = server_url, template
        self._names = (f"zapvet_t_{os.getpid()}_{n}" for n in itertools.count())
        self._ready: queue.Queue[tuple[str, str] | Exception] = queue.Queue(maxsize=AHEAD)
        self._finished: queue.Queue[str | None] = queue.Queue(maxsize=AHEAD)
        self._stopping = threading.Event()
        self._drop_errors: list[Exception] = []
        self._cloner = threading.Thread(target=self._clone, name="test-db-cloner", daemon=True)
        self._droppers = [
            threading.Thread(target=self._drop, name=f"test-db-dropper-{n}", daemon=True)
            for n in range(DROPPERS)
        ]
        self._cloner.start()
        for dropper in self._droppers:
            dropper.start()

    def take(self) -> tuple[str, str]:
        """A fresh database's name and URL. Raises what cloning it raised."""
        ready = self._ready.get()
        if isinstance(ready, Exception):
            raise ready
        return ready

    def give_back(self, name: str) -> None:
        """Drop `name` once the dropper gets to it (waits while AHEAD drops are pending)."""
        self._finished.put(name)

    def close(self) -> None:
        """Stop cloning, drop every database this made, and wait for every thread.

        Raises:
            Exception: the first drop that failed (a later session drops what is left).
        """
        self._stopping.set()
        while self._cloner.is_alive():  # it may be waiting for room in the ready queue
            self._empty_ready()
            self._cloner.join(timeout=0.1)
        self._empty_ready()
        for _ in self._droppers:
            self._finished.put(None)
        for dropper in self._droppers:
            dropper.join()
        if self._drop_errors:
            raise self._drop_errors[0]

    def _empty_ready(self) -> None:
        while True:
            try:
                ready = self._ready.get_nowait()
            except queue.Empty:
                return
            if not isinstance(ready, Exception):
                self._finished.put(ready[0])

    def _clone(self) -> None:
        while not self._stopping.is_set():
            name = next(self._names)
            try:
                url = db.create_database(self.server_url, name, template=self.template)
            except Exception as exc:  # handed to the test that takes it
                self._ready.put(exc)
            else:
                self._ready.put((name, url))

    def _drop(self) -> None:
        while (name := self._finished.get()) is not None:
            try:
                db.drop_database(self.server_url, name)
            except Exception as exc:  # keep dropping the others; close() reports it
                self._drop_errors.append(exc)
