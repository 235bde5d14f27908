"""The Anthropic Messages adapter. The only module that imports the `anthropic` SDK."""

from __future__ import annotations

import anthropic

from engine.llm.client import Completion
from engine.llm.config import LLMConfig, ModelConfig
from engine.llm.http_errors import sdk_error
from engine.llm.resilience import RequestGate


def make_sdk_client(config: LLMConfig, api_key: str) -> anthropic.AsyncAnthropic:
    """Returns the one SDK client a run shares among its models (building one costs ~20 ms).

    The SDK's own retries are off: `RequestGate` does all retrying.
    """
    return anthropic.AsyncAnthropic(
        api_key=api_key, base_url=config.base_url, max_retries=0, timeout=config.timeout_s
    )


class AnthropicMessagesClient:
    """An `LLMClient` for one model through the Messages API.

    Args:
        sdk: the shared SDK client (see `make_sdk_client`).
        model: the model's name, sampling settings and prices.
        config: the llm config (base_url, system prompt).
        gate: the run's shared in-flight limit, budget and retry loop.
    """

    def __init__(
        self, sdk: anthropic.AsyncAnthropic, model: ModelConfig, config: LLMConfig, gate: RequestGate
    ) -> None:
        self._sdk = sdk
        self.model = model
        self.config = config
        self.gate = gate
        self.key_env = config.api_key_env(model)
        self.where = f"anthropic model '{model.name}' at {config.base_url or 'api.anthropic.com'}"

    def __repr__(self) -> str:
        return f"AnthropicMessagesClient(model={self.model.name!r}, base_url={self.config.base_url!r})"

    async def complete(self, prompt: str, system: str = "") -> Completion:
        """Returns the model's answer to `prompt`, with `system` after the configured system prompt (see
        `RequestGate.run` for the errors raised)."""
        return await self.gate.run(lambda: self._attempt(prompt, system), self.where)

    async def _attempt(self, prompt: str, system: str = "") -> Completion:
        system_text = "\n\n".join(part for part in (self.config.system_prompt, system) if part)
        extra: dict = {"system": system_text} if system_text else {}
        if self.model.temperature is not None:
            # The SDK dropped its `temperature` argument (newer models reject it); the API still takes it.
            extra["extra_body"] = {"temperature": self.model.temperature}
        try:
            response = await self._sdk.messages.create(
                model=self.model.name,
                max_tokens=self.model.max_tokens,
                messages=[{"role": "user", "content": prompt}],
                **extra,
            )
        except Exception as error:  # noqa: BLE001 - sdk_error picks the SDK's own exceptions out
            translated = sdk_error(error, anthropic, where=self.where, key_env=self.key_env)
            if translated is None:
                raise
            raise translated from None  # not `from error`: the SDK exception holds the request and its key
        text = "".join(getattr(block, "text", "") for block in response.content if block.type == "text")
        usage = response.usage
        prompt_tokens = (usage.input_tokens or 0) + (usage.cache_creation_input_tokens or 0) + (
            usage.cache_read_input_tokens or 0
        )
        completion_tokens = usage.output_tokens or 0
        return Completion(
            text=text,
            model=self.model.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=self.model.cost_usd(prompt_tokens, completion_tokens),
            truncated=response.stop_reason == "max_tokens",
        )
