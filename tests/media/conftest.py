"""Fake gateways and a fake OpenAI server on loopback, and an HTTP client for them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from zapvet.testing.gateways import FakeCloudAPI, FakeEvolutionAPI
from zapvet.testing.openai_server import FakeOpenAIServer


@pytest.fixture
def evolution() -> Iterator[FakeEvolutionAPI]:
    with FakeEvolutionAPI() as fake:
        yield fake


@pytest.fixture
def cloud() -> Iterator[FakeCloudAPI]:
    with FakeCloudAPI() as fake:
        yield fake


@pytest.fixture
def openai() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client
