"""The benchmarks' HTTP client: raw HTTP/1.1 keep-alive connections on uvloop, so the same
cheap client drives the bridge and its baseline; and realistic Evolution API v2 webhooks.

Each connection sends one request, reads the whole answer (status line, headers,
Content-Length body) and records the latency, until the phase ends.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench._harness import INSTANCE, WEBHOOK_TOKEN
from zapvet.testing.gateways import FakeEvolutionAPI

_NAMES = ["Ana Souza", "Bruno Lima", "Carla Dias", "Diego Alves", "Elaine Rocha", "Fábio Melo"]
_TEXTS = [
    "Oi, boa tarde! Vocês têm horário para banho amanhã?",
    "Quanto custa a tosa completa para um shih-tzu?",
    "Meu cachorro está vomitando desde ontem, dá para consultar hoje?",
    "Quero remarcar o banho do Rex para sexta",
]


@dataclass
class Phase:
    """What one load phase measured."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)


class Contacts:
    """Brazilian mobile numbers with a skewed spread: a few regulars write often, most once."""

    def __init__(self, count: int, *, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.phones = [f"55{rng.choice([11, 21, 31, 41, 51])}9{rng.randrange(10**8):08d}"
                       for _ in range(count)]  # fmt: skip
        weights = [1 / (rank + 1) ** 0.8 for rank in range(count)]
        self._rng = rng
        self._weights = list(itertools.accumulate(weights))

    def pick(self) -> int:
        return self._rng.choices(range(len(self.phones)), cum_weights=self._weights)[0]


class Webhooks:
    """`messages.upsert` bodies as Evolution API v2 posts them, each with a new message id."""

    def __init__(self, contacts: Contacts, *, run: str, instance: str = INSTANCE) -> None:
        self.contacts = contacts
        self._ids = itertools.count(1)
        self._run = run
        gateway = FakeEvolutionAPI(instances=[instance])
        sample = gateway.incoming(instance, "5511999990000", "@@TEXT@@", message_id="@@ID@@",
                                  push_name="@@NAME@@", timestamp=datetime.now(UTC))  # fmt: skip
        self._template = json.dumps(sample, ensure_ascii=False)

    def body(self, contact: int | None = None) -> bytes:
        index = self.contacts.pick() if contact is None else contact
        phone = self.contacts.phones[index]
        serial = next(self._ids)
        text = _TEXTS[serial % len(_TEXTS)]
        message_id = f"3EB0{self._run}{serial:012X}"
        body = (
            self._template.replace("5511999990000", phone)
            .replace("@@ID@@", message_id)
            .replace("@@NAME@@", _NAMES[index % len(_NAMES)])
            .replace("@@TEXT@@", text)
        )
        return body.encode()


def request_bytes(port: int, path: str, body: bytes, token: str = WEBHOOK_TOKEN) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-Webhook-Token: {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1, reopened when uvicorn has closed it
    (its keep-alive timeout is 5 s; closed-loop customers wait longer than that)."""

    #: Reconnect before sending after this much idle time, rather than race uvicorn's close.
    IDLE_S = 4.0

    def __init__(self, port: int, *, token: str = WEBHOOK_TOKEN) -> None:
        self.port = port
        self.token = token
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._used = 0.0

    async def post(self, path: str, body: bytes) -> int:
        """Send one POST and read the whole answer; returns the status."""
        if self._writer is not None and time.perf_counter() - self._used > self.IDLE_S:
            await self.close()
        try:
            return await self._post(path, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()  # closed by the server between requests: once more, afresh
            return await self._post(path, body)

    async def _post(self, path: str, body: bytes) -> int:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self._reader is not None
        self._writer.write(request_bytes(self.port, path, body, self.token))
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self._reader.readexactly(length)
        self._used = time.perf_counter()
        return status

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


async def _hammer(
    port: int, path: str, make_body: Callable[[], bytes], phase: Phase, until: float
) -> None:
    connection = Connection(port)
    try:
        while time.perf_counter() < until:
            body = make_body()
            started = time.perf_counter()
            status = await connection.post(path, body)
            phase.latencies.append(time.perf_counter() - started)
            phase.statuses[status] += 1
    finally:
        await connection.close()


async def load(
    port: int, path: str, make_body: Callable[[], bytes], *, concurrency: int, seconds: float
) -> Phase:
    """`concurrency` connections post back to back for `seconds`; requests in flight at the
    end finish and count."""
    started = time.perf_counter()
    phase = Phase(seconds=0.0)
    until = started + seconds
    await asyncio.gather(
        *(_hammer(port, path, make_body, phase, until) for _ in range(concurrency))
    )
    phase.seconds = time.perf_counter() - started
    return phase
