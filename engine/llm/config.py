"""The `llm:` section of an experiment config: which server, which models, how hard to retry, how much to spend."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Environment variable read for the key when a model does not name one.
DEFAULT_API_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class ModelConfig(BaseModel):
    """One model in the mix.

    Attributes:
        name: the model name sent to the server, e.g. "gpt-4.1-mini" or "claude-sonnet-4-5".
        weight: relative share of samples drawn from this model (> 0).
        temperature: sampling temperature; None sends none, so the server's default applies (newer reasoning
            models of both providers accept only their default).
        max_tokens: cap on completion tokens per request.
        api_key_env: name of the environment variable that holds the key; None means OPENAI_API_KEY or
            ANTHROPIC_API_KEY, depending on the provider. The key itself never goes in a config.
        input_usd_per_mtok: price of one million prompt tokens, in US dollars.
        output_usd_per_mtok: price of one million completion tokens, in US dollars.
        samples: answers asked for in one request (Chat Completions' `n`), each read as a candidate. The
            prompt is sent and billed once for all of them, and the engine's own cost per request (the SDK
            builds and parses it) is shared. OpenAI and vLLM honour it; Anthropic's Messages API has no such
            parameter, so provider "anthropic" needs 1. A run stops at --max-evals: answers of its last requests
            beyond that are not evaluated, though their tokens were paid for.
    """

    # hide_input_in_errors: a key pasted by mistake into api_key_env must not be echoed in the error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int = Field(default=4096, gt=0)
    api_key_env: str | None = None
    input_usd_per_mtok: float = Field(default=0.0, ge=0)
    output_usd_per_mtok: float = Field(default=0.0, ge=0)
    samples: int = Field(default=1, ge=1, le=16)

    @field_validator("api_key_env")
    @classmethod
    def _names_a_variable(cls, value: str | None) -> str | None:
        if value is not None and not (value.replace("_", "a").isalnum() and not value[0].isdigit()):
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (letters, digits, underscores), "
                "e.g. OPENAI_API_KEY; put the key itself in that variable, never in the config"
            )
        return value

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Returns the price in US dollars of one request with these token counts."""
        return (prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok) / 1e6


class LLMConfig(BaseModel):
    """How the LLM proposer reaches its models.

    Attributes:
        provider: "openai" (OpenAI, or any server speaking Chat Completions: vLLM, Ollama, llama.cpp) or
            "anthropic" (Messages API).
        base_url: the server's API root, e.g. "http://127.0.0.1:8000/v1" for vLLM; None for the provider's own.
        models: the models to sample from, drawn by weight for each prompt.
        max_in_flight: most requests waiting on the server at once, over all models.
        timeout_s: wall-clock limit of one request attempt, in seconds.
        max_retries: retries after the first attempt on rate limits, 5xx, timeouts and connection errors.
        backoff_initial_s: wait before the first retry when the server gives no Retry-After, in seconds;
            doubles on each retry, with jitter.
        backoff_max_s: cap on one wait between retries, in seconds (Retry-After included).
        max_cost_usd: stop before a request once this much has been spent, in US dollars; None for no cap.
        max_tokens: stop before a request once this many tokens (prompt + completion) have been used; None
            for no cap.
        edit_format: "rewrite" asks for the whole function; "diff" asks for SEARCH/REPLACE blocks against the
            best program shown (an answer that does not apply is read as a rewrite).
        system_prompt: sent as the system message of every request, before the rules of the function to
            write; "" sends only the rules.
        prompt_style: "chat" sends the rules as the system message and the programs with the request as the
            user message; "completion" sends FunSearch's versioned program text, ending at the header of the
            next version, to the text completions endpoint (base models, provider "openai" only).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["openai", "anthropic"] = "openai"
    base_url: str | None = None
    models: tuple[ModelConfig, ...] = Field(min_length=1)
    max_in_flight: int = Field(default=4, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    backoff_initial_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    edit_format: Literal["rewrite", "diff"] = "rewrite"
    system_prompt: str = (
        "You improve Python models of behaviour and neural data. Answer with Python code in one ```python block."
    )
    prompt_style: Literal["chat", "completion"] = "chat"

    @model_validator(mode="after")
    def _samples_need_chat_completions(self) -> LLMConfig:
        many = [model.name for model in self.models if model.samples > 1]
        if self.provider == "anthropic" and many:
            raise ValueError(
                f"models {', '.join(many)} ask for samples > 1, but Anthropic's Messages API returns one answer "
                "per request; set samples: 1 (raise max_in_flight for more requests at once)"
            )
        if self.provider == "anthropic" and self.prompt_style == "completion":
            raise ValueError(
                "prompt_style 'completion' needs a text completions endpoint, which Anthropic's Messages API "
                "does not have; use prompt_style: chat"
            )
        return self

    def api_key_env(self, model: ModelConfig) -> str:
        """Returns the environment variable that holds the key for `model`."""
        return model.api_key_env or DEFAULT_API_KEY_ENV[self.provider]
