"""The models of one run, drawn by weight, built from an `LLMConfig` and the environment."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any

from engine.llm.client import LLMClient
from engine.llm.config import LLMConfig
from engine.llm.errors import LLMAuthError
from engine.llm.resilience import Budget, RequestGate

logger = logging.getLogger(__name__)

#: Sent as the key to a custom base_url when its variable is unset; local servers (vLLM, Ollama) ignore keys.
PLACEHOLDER_KEY = "no-key-set"


class ModelMix:
    """Clients for several models, one of which is drawn by weight for each prompt.

    Args:
        clients: one client per model.
        weights: relative share of prompts for each client (> 0).
        gate: the shared in-flight limit and budget, when the clients were built from a config.
        sdk_clients: SDK clients to close in `aclose`.
    """

    def __init__(
        self,
        clients: Sequence[LLMClient],
        weights: Sequence[float] | None = None,
        gate: RequestGate | None = None,
        sdk_clients: Sequence[Any] = (),
    ) -> None:
        weights = [1.0] * len(clients) if weights is None else list(weights)
        if not clients or len(weights) != len(clients) or min(weights) <= 0:
            raise ValueError(
                f"ModelMix needs at least one client and one positive weight per client; got {len(clients)} "
                f"clients and weights {weights}"
            )
        self.clients = tuple(clients)
        self.weights = tuple(weights)
        self.gate = gate
        self._sdk_clients = tuple(sdk_clients)

    def __repr__(self) -> str:
        return f"ModelMix(clients={list(self.clients)!r}, weights={list(self.weights)})"

    @property
    def budget(self) -> Budget | None:
        """Money and tokens spent so far, when built from a config."""
        return self.gate.budget if self.gate else None

    def choose(self, rng: random.Random) -> LLMClient:
        """Returns one client, drawn with probability proportional to its weight."""
        if len(self.clients) == 1:
            return self.clients[0]
        return rng.choices(self.clients, weights=self.weights)[0]

    async def aclose(self) -> None:
        """Closes the SDK clients' connection pools; call once at the end of a run."""
        for sdk in self._sdk_clients:
            await sdk.close()

    @classmethod
    def from_config(cls, config: LLMConfig, environ: Mapping[str, str] | None = None) -> ModelMix:
        """Builds one client per model, sharing one SDK client per key and one `RequestGate`.

        Args:
            config: the llm config.
            environ: where the keys are read; defaults to os.environ.

        Raises:
            LLMAuthError: when a model's key variable is unset and base_url is not set (the providers' own
                APIs always need a key). With a custom base_url an unset variable is allowed: local servers
                usually take no key.
        """
        environ = os.environ if environ is None else environ
        key_envs = {config.api_key_env(model) for model in config.models}
        keys = {key_env: _api_key(config, key_env, environ) for key_env in key_envs}  # before the slow SDK import
        if config.provider == "openai":
            from engine.llm.openai_client import OpenAIChatClient as client_class
            from engine.llm.openai_client import make_sdk_client
        else:
            from engine.llm.anthropic_client import AnthropicMessagesClient as client_class
            from engine.llm.anthropic_client import make_sdk_client
        gate = RequestGate(config)
        sdk_by_key_env: dict[str, Any] = {}
        clients = []
        for model in config.models:
            key_env = config.api_key_env(model)
            if key_env not in sdk_by_key_env:
                sdk_by_key_env[key_env] = make_sdk_client(config, keys[key_env])
            clients.append(client_class(sdk_by_key_env[key_env], model, config, gate))
        return cls(clients, [model.weight for model in config.models], gate, list(sdk_by_key_env.values()))


def _api_key(config: LLMConfig, key_env: str, environ: Mapping[str, str]) -> str:
    key = environ.get(key_env, "").strip()
    if key:
        return key
    if config.base_url:
        logger.info("%s is not set; sending no key to %s", key_env, config.base_url)
        return PLACEHOLDER_KEY
    raise LLMAuthError(
        f"the {config.provider} API needs a key, but the environment variable {key_env} is not set. "
        f"Export it (export {key_env}=...) or name another variable in llm.models[].api_key_env."
    )
