"""The media rig every evals test shares: a fake gateway and transcription server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zapvet.testing.media_rig import FakeMediaRig, media_rig


@pytest.fixture(scope="session")
def rig() -> Iterator[FakeMediaRig]:
    with media_rig() as started:
        yield started
