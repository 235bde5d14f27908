"""The LLM seam: `LLMClient` sends one prompt and returns one `Completion`; `FakeLLM` is its in-process twin."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Completion:
    """One answer from a model.

    Attributes:
        text: the answer text.
        model: the model that wrote it.
        prompt_tokens: prompt tokens billed, as reported by the server.
        completion_tokens: completion tokens billed, as reported by the server.
        cost_usd: price of the request in US dollars, from the model's configured prices.
        truncated: the model stopped at its max_tokens, so the text may end mid-statement.
        alternatives: the other answers of the same request (text, truncated) when several were asked for
            (`ModelConfig.samples`); tokens and cost above cover all of them.
    """

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    truncated: bool = False
    alternatives: tuple[tuple[str, bool], ...] = ()

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@runtime_checkable
class LLMClient(Protocol):
    """Sends one prompt to one model and returns its answer.

    `system` is added to the configured system prompt of a chat model (the rules of the function to write);
    a completion model gets `prompt` alone. Retries, rate limits and budgets are the implementation's
    business; a caller sees either a `Completion` or an `LLMError`. A minimal implementation:

        class Constant:
            async def complete(self, prompt: str, system: str = "") -> Completion:
                return Completion(text="def agent(params, x):\\n    return x\\n", model="constant")
    """

    async def complete(self, prompt: str, system: str = "") -> Completion: ...


Answer = str | BaseException
AnswerSource = Iterable[Answer] | Callable[[str], Answer]


class FakeLLM:
    """An `LLMClient` that answers from a script, for tests.

    Args:
        answers: the answers in order (a string is returned, an exception is raised), or a function from the
            prompt to an answer. When a finite script runs out, `complete` raises `IndexError`.
        model: the model name reported in each `Completion`.
        cost_usd_per_token: price charged per prompt or completion token (whitespace-separated words count
            as tokens here).

    Attributes:
        prompts: every prompt received, in order.
        systems: the system text sent with each prompt, in order.
    """

    def __init__(self, answers: AnswerSource, model: str = "fake", cost_usd_per_token: float = 0.0) -> None:
        self._answer_for = answers if callable(answers) else None
        self._script = None if callable(answers) else iter(list(answers))
        self.model = model
        self.cost_usd_per_token = cost_usd_per_token
        self.prompts: list[str] = []
        self.systems: list[str] = []

    async def complete(self, prompt: str, system: str = "") -> Completion:
        """Returns the next scripted answer (or raises it, when it is an exception)."""
        self.prompts.append(prompt)
        self.systems.append(system)
        if self._answer_for is not None:
            answer = self._answer_for(prompt)
        else:
            try:
                answer = next(self._script)  # type: ignore[arg-type]
            except StopIteration:
                raise IndexError(f"FakeLLM ran out of answers after {len(self.prompts) - 1} prompts") from None
        if isinstance(answer, BaseException):
            raise answer
        prompt_tokens, completion_tokens = len(prompt.split()), len(answer.split())
        return Completion(
            text=answer,
            model=self.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=(prompt_tokens + completion_tokens) * self.cost_usd_per_token,
        )
