"""The production chat model: any OpenAI-compatible endpoint, always with a timeout and retries."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from zapvet.config import Settings
from zapvet.errors import ConfigError

#: Seconds before one model request is abandoned (the SDK default is no timeout at all).
REQUEST_TIMEOUT_S = 30.0
#: Retries of a failed request by the SDK itself (connection errors, 408/429/5xx).
MAX_RETRIES = 2


def build_chat_model(
    settings: Settings, *, model: str | None = None, temperature: float | None = None
) -> BaseChatModel:
    """A ChatOpenAI for `model` (default: ZAPVET_MODEL) on the configured endpoint.

    Raises:
        ConfigError: OPENAI_API_KEY is not set.
    """
    if settings.openai_api_key is None:
        raise ConfigError(
            "OPENAI_API_KEY", "is not set: the agents need a model endpoint (any OpenAI-compatible)"
        )
    return ChatOpenAI(
        model=model or settings.model,
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        temperature=temperature,
        timeout=REQUEST_TIMEOUT_S,
        max_retries=MAX_RETRIES,
        stream_usage=True,
    )
