"""Errors raised by the LLM clients.

`LLMError` is the base class. Those that stop a run propagate out of `LLMProposer.propose`:
`LLMAuthError` (the key was rejected or is missing), `LLMBudgetExhausted` (the configured spending cap was
reached), `LLMUnavailableError` (the server kept failing after every retry) and `LLMRequestError` (the server
refused the request for a reason retrying cannot fix, e.g. an unknown model name).

`LLMResponseError` (the server answered without an answer, e.g. no choices) and `CompletionParseError` (no usable
code in the answer) are about one sample only: the proposer turns them into a failed `Proposal` and the run goes
on. A malformed body (not JSON) is retried like a 5xx.
"""

from __future__ import annotations

from engine.errors import DiscoverError


class LLMError(DiscoverError):
    """Base class of every error raised by `engine.llm`."""


class LLMAuthError(LLMError):
    """The server rejected the API key (HTTP 401/403), or the environment variable holding it is not set."""


class LLMBudgetExhausted(LLMError):
    """The next request would start after `max_cost_usd` or `max_tokens` has been spent."""


class LLMUnavailableError(LLMError):
    """The server kept failing (rate limits, 5xx, timeouts, connection errors) after `max_retries` retries."""


class LLMRequestError(LLMError):
    """The server refused the request with a 4xx status that retrying cannot fix (e.g. 404 unknown model)."""


class LLMResponseError(LLMError):
    """The server answered, but without an answer to read (e.g. no choices)."""


class CompletionParseError(LLMError, ValueError):
    """No usable candidate code could be extracted from a completion."""


class TransientLLMError(LLMError):
    """One attempt failed in a way that a later attempt may not (raised by adapters, handled by the retry loop).

    Attributes:
        retry_after_s: how long the server asked us to wait (Retry-After), or None.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
