"""What every request goes through, whatever the SDK: the in-flight limit, the budget, timeouts and retries.

One `RequestGate` serves all the models of one `LLMConfig`, so `max_in_flight`, `max_cost_usd` and
`max_tokens` hold over the whole run. SDK adapters make single attempts and report failures as
`TransientLLMError` (worth retrying) or another `LLMError` (not).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable, Iterable

from engine.llm.client import Completion
from engine.llm.config import LLMConfig
from engine.llm.errors import (
    LLMAuthError,
    LLMBudgetExhausted,
    LLMRequestError,
    LLMUnavailableError,
    TransientLLMError,
)

logger = logging.getLogger(__name__)

#: How far the timeout may grow when a server answers a lone request slower than llm.timeout_s.
MAX_TIMEOUT_GROWTH = 8

#: HTTP statuses worth retrying besides 5xx: request timeout, conflict, too early, rate limited.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


class Budget:
    """Money and tokens spent so far, against the configured caps.

    Requests already in flight when a cap is reached still finish and are counted, so the total can pass a
    cap by at most `max_in_flight - 1` requests.
    """

    def __init__(self, max_cost_usd: float | None = None, max_tokens: int | None = None) -> None:
        self.max_cost_usd = max_cost_usd
        self.max_tokens = max_tokens
        self.spent_usd = 0.0
        self.spent_tokens = 0
        self.requests = 0

    def check(self) -> None:
        """Raises `LLMBudgetExhausted` when a new request would start at or past a cap."""
        if self.max_cost_usd is not None and self.spent_usd >= self.max_cost_usd:
            raise LLMBudgetExhausted(
                f"spent ${self.spent_usd:.4f} of max_cost_usd = ${self.max_cost_usd:.4f} over {self.requests} "
                "requests; raise llm.max_cost_usd to go on"
            )
        if self.max_tokens is not None and self.spent_tokens >= self.max_tokens:
            raise LLMBudgetExhausted(
                f"used {self.spent_tokens} of max_tokens = {self.max_tokens} tokens over {self.requests} "
                "requests; raise llm.max_tokens to go on"
            )

    def record(self, completion: Completion) -> None:
        """Adds one answered request."""
        self.spent_usd += completion.cost_usd
        self.spent_tokens += completion.tokens
        self.requests += 1


def redact(text: str, key_envs: Iterable[str]) -> str:
    """Returns `text` with the values of these environment variables (API keys) replaced by '***'."""
    for name in key_envs:
        secret = os.environ.get(name, "")
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def error_for_status(status: int, detail: str, *, where: str, key_env: str, retry_after_s: float | None):
    """Returns the `LLMError` for an HTTP error status from the server.

    Args:
        status: the HTTP status code.
        detail: the server's error message, already redacted.
        where: who answered, e.g. "openai model 'gpt-4.1' at http://127.0.0.1:8000/v1".
        key_env: the environment variable the key came from.
        retry_after_s: the server's Retry-After, in seconds, if any.
    """
    if status in (401, 403):
        return LLMAuthError(
            f"{where} rejected the API key from ${key_env} (HTTP {status}: {detail}). Check that {key_env} holds "
            "a valid key for this server and model."
        )
    if status in RETRYABLE_STATUSES or status >= 500:
        return TransientLLMError(f"HTTP {status}: {detail}", retry_after_s=retry_after_s)
    return LLMRequestError(
        f"{where} refused the request (HTTP {status}: {detail}). Check the model name, base_url and "
        "max_tokens in the llm config."
    )


class AdaptiveLimit:
    """An in-flight limit that can be lowered while requests wait on it.

    `release` is synchronous, so a cancelled request always gives its place back.

    Args:
        limit: how many holders at once to start with.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.holders = 0
        self._waiters: list[asyncio.Future] = []

    async def acquire(self) -> None:
        while self.holders >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.holders += 1

    def release(self) -> None:
        self.holders -= 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:  # all of them check again; a few requests at most wait here
            if not waiter.done():
                waiter.set_result(None)


class RequestGate:
    """Runs request attempts under the in-flight limit and the budget, with timeouts and retries.

    The limit adapts to a server slower than the timeout, such as a local server that computes one answer at a
    time: when an attempt times out while others were in flight, the limit becomes half of the number that
    were (down to 1) for the rest of the run, because requests were waiting in the server's queue; when one times out alone, the timeout
    doubles (up to `MAX_TIMEOUT_GROWTH` times llm.timeout_s). A timed-out attempt is cancelled, which closes its
    connection, so that a server that watches its connections (llama.cpp, vLLM) stops computing it.

    Args:
        config: supplies max_in_flight, timeout_s, max_retries, backoff_* and the budget caps.
        sleep: the coroutine used to wait between retries (seconds).
        rng: source of backoff jitter.
    """

    def __init__(
        self,
        config: LLMConfig,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.budget = Budget(config.max_cost_usd, config.max_tokens)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.limit = AdaptiveLimit(config.max_in_flight)
        self.timeout_s = config.timeout_s
        self.in_flight = 0
        self.retries = 0
        self._overlaps: list[list[int]] = []

    def __repr__(self) -> str:
        return (f"RequestGate(max_in_flight={self.limit.limit} of {self.config.max_in_flight}, "
                f"timeout_s={self.timeout_s:g}, spent_usd={self.budget.spent_usd:.4f})")

    def _timed_out(self, in_flight: int, where: str) -> None:
        """Adapts the limit, or the timeout, after an attempt that timed out with `in_flight` attempts out."""
        if in_flight > 1 and self.limit.limit > 1:
            self.limit.limit = max(1, min(self.limit.limit, in_flight) // 2)
            logger.warning("%s: no answer within %g s with %d requests waiting; sending at most %d at once from now "
                           "on (set llm.max_in_flight or --max-in-flight to start there)",
                           where, self.timeout_s, in_flight, self.limit.limit)
        elif in_flight <= 1 and self.timeout_s < self.config.timeout_s * MAX_TIMEOUT_GROWTH:
            self.timeout_s = min(self.timeout_s * 2, self.config.timeout_s * MAX_TIMEOUT_GROWTH)
            logger.warning("%s: no answer within the timeout to a request sent alone; waiting up to %g s from now "
                           "on (set llm.timeout_s or --timeout-s to start there)", where, self.timeout_s)

    def backoff_s(self, retry: int, retry_after_s: float | None) -> float:
        """Returns the wait before retry number `retry` (0-based), in seconds.

        The server's Retry-After wins when given (plus up to 10% jitter, so that waiting clients do not all
        come back at once); otherwise backoff_initial_s * 2**retry with full jitter in its upper half.
        Both are capped at backoff_max_s.
        """
        cap = self.config.backoff_max_s
        if retry_after_s is not None and retry_after_s >= 0:
            return min(cap, retry_after_s * (1.0 + 0.1 * self._rng.random()))
        exponential = min(cap, self.config.backoff_initial_s * 2**retry)
        return exponential * (0.5 + 0.5 * self._rng.random())

    async def run(self, attempt: Callable[[], Awaitable[Completion]], where: str) -> Completion:
        """Returns the first successful attempt's completion, counted against the budget.

        Raises:
            LLMBudgetExhausted: before an attempt that would start past a cap.
            LLMUnavailableError: when the first attempt and all `max_retries` retries failed transiently.
            LLMError: any other error from an attempt, at once.
        """
        for retry in range(self.config.max_retries + 1):
            await self.limit.acquire()
            try:
                self.budget.check()
                self.in_flight += 1
                overlap = [1]  # the most attempts out at once while this one waited
                self._overlaps.append(overlap)
                for other in self._overlaps:
                    other[0] = max(other[0], len(self._overlaps))
                timeout_s = self.timeout_s
                try:
                    async with asyncio.timeout(timeout_s):
                        completion = await attempt()
                except TimeoutError:
                    failure = TransientLLMError(f"no answer within timeout_s = {timeout_s:g} s")
                    self._timed_out(overlap[0], where)
                except TransientLLMError as error:
                    failure = error
                else:
                    self.budget.record(completion)
                    return completion
                finally:
                    self.in_flight -= 1
                    self._overlaps.remove(overlap)
            finally:
                self.limit.release()
            if retry == self.config.max_retries:
                break
            delay_s = self.backoff_s(retry, failure.retry_after_s)
            self.retries += 1
            logger.warning(
                "%s: %s; retry %d of %d in %.2f s", where, failure, retry + 1, self.config.max_retries, delay_s
            )
            await self._sleep(delay_s)
        raise LLMUnavailableError(
            f"{where} failed {self.config.max_retries + 1} times; last error: {failure}. Check that the server "
            "is up, or raise llm.max_retries / llm.timeout_s."
        )
