"""The OpenAI Chat Completions adapter, for OpenAI and every server that speaks the same API (vLLM, Ollama,
llama.cpp, LiteLLM). The only module that imports the `openai` SDK."""

from __future__ import annotations

import openai

from engine.llm.client import Completion
from engine.llm.config import LLMConfig, ModelConfig
from engine.llm.errors import LLMResponseError
from engine.llm.http_errors import sdk_error
from engine.llm.resilience import RequestGate


#: Where a completion model's continuation of the function body ends: the next top-level statement.
COMPLETION_STOPS = ["\ndef ", "\nclass ", "\nif __name__", "\n# "]


def _choice_text(choice) -> str:
    """The text of a chat choice (`message.content`) or of a text completion choice (`text`)."""
    message = getattr(choice, "message", None)
    return (message.content if message is not None else getattr(choice, "text", "")) or ""


def make_sdk_client(config: LLMConfig, api_key: str) -> openai.AsyncOpenAI:
    """Returns the one SDK client a run shares among its models (building one costs ~20 ms).

    The SDK's own retries are off: `RequestGate` does all retrying, so that Retry-After, backoff and the
    budget are handled in one place.
    """
    return openai.AsyncOpenAI(api_key=api_key, base_url=config.base_url, max_retries=0, timeout=config.timeout_s)


class OpenAIChatClient:
    """An `LLMClient` for one model through Chat Completions.

    Args:
        sdk: the shared SDK client (see `make_sdk_client`).
        model: the model's name, sampling settings and prices.
        config: the llm config (provider, base_url, system prompt).
        gate: the run's shared in-flight limit, budget and retry loop.
    """

    def __init__(self, sdk: openai.AsyncOpenAI, model: ModelConfig, config: LLMConfig, gate: RequestGate) -> None:
        self._sdk = sdk
        self.model = model
        self.config = config
        self.gate = gate
        self.key_env = config.api_key_env(model)
        self.where = f"openai model '{model.name}' at {config.base_url or 'api.openai.com'}"
        # OpenAI's own API wants max_completion_tokens (reasoning models refuse max_tokens); compatible servers
        # such as vLLM, Ollama and llama.cpp all understand max_tokens.
        # The text completions endpoint takes max_tokens everywhere.
        use_max_tokens = config.base_url or config.prompt_style == "completion"
        self._max_tokens_field = "max_tokens" if use_max_tokens else "max_completion_tokens"

    def __repr__(self) -> str:
        return f"OpenAIChatClient(model={self.model.name!r}, base_url={self.config.base_url!r})"

    async def complete(self, prompt: str, system: str = "") -> Completion:
        """Returns the model's answer to `prompt` (see `RequestGate.run` for the errors raised).

        A chat model gets the configured system prompt followed by `system`, then `prompt` as the user message;
        with `prompt_style: completion` the text completions endpoint continues `prompt` itself.
        """
        return await self.gate.run(lambda: self._attempt(prompt, system), self.where)

    async def _attempt(self, prompt: str, system: str = "") -> Completion:
        settings: dict = {self._max_tokens_field: self.model.max_tokens}
        if self.model.temperature is not None:
            settings["temperature"] = self.model.temperature
        if self.model.samples > 1:
            settings["n"] = self.model.samples
        try:
            if self.config.prompt_style == "completion":
                response = await self._sdk.completions.create(
                    model=self.model.name, prompt=prompt, stop=COMPLETION_STOPS, **settings
                )
            else:
                messages = [{"role": "user", "content": prompt}]
                system_text = "\n\n".join(part for part in (self.config.system_prompt, system) if part)
                if system_text:
                    messages.insert(0, {"role": "system", "content": system_text})
                response = await self._sdk.chat.completions.create(
                    model=self.model.name, messages=messages, **settings
                )
        except Exception as error:  # noqa: BLE001 - sdk_error picks the SDK's own exceptions out
            translated = sdk_error(error, openai, where=self.where, key_env=self.key_env)
            if translated is None:
                raise
            raise translated from None  # not `from error`: the SDK exception holds the request and its key
        if not response.choices:  # e.g. a content filter; asking again would cost the same and get the same
            raise LLMResponseError(f"{self.where} answered without any choices")
        choice = response.choices[0]
        text = _choice_text(choice)
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        return Completion(
            text=text,
            model=self.model.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=self.model.cost_usd(prompt_tokens, completion_tokens),
            truncated=choice.finish_reason == "length",
            alternatives=tuple(
                (_choice_text(other), other.finish_reason == "length") for other in response.choices[1:]
            ),
        )
