"""LLM clients: one `LLMClient` per model behind a shared in-flight limit, budget and retry loop.

The SDK adapters (`engine.llm.openai_client`, `engine.llm.anthropic_client`) are imported only when a config
asks for them.
"""

from engine.llm.client import Completion, FakeLLM, LLMClient
from engine.llm.config import DEFAULT_API_KEY_ENV, LLMConfig, ModelConfig
from engine.llm.errors import (
    CompletionParseError,
    LLMAuthError,
    LLMBudgetExhausted,
    LLMError,
    LLMRequestError,
    LLMResponseError,
    LLMUnavailableError,
    TransientLLMError,
)
from engine.llm.mix import ModelMix
from engine.llm.resilience import Budget, RequestGate

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "Budget",
    "Completion",
    "CompletionParseError",
    "FakeLLM",
    "LLMAuthError",
    "LLMBudgetExhausted",
    "LLMClient",
    "LLMConfig",
    "LLMError",
    "LLMRequestError",
    "LLMResponseError",
    "LLMUnavailableError",
    "ModelConfig",
    "ModelMix",
    "RequestGate",
    "TransientLLMError",
]
