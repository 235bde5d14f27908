"""The retry loop, in-flight limit and budget, driven by scripted attempts (no network)."""

import asyncio
import random

import pytest

from engine.llm import (
    Completion,
    LLMAuthError,
    LLMBudgetExhausted,
    LLMConfig,
    LLMUnavailableError,
    ModelConfig,
    RequestGate,
    TransientLLMError,
)
from engine.llm.http_errors import error_detail, retry_after_s


def make_gate(**settings) -> tuple[RequestGate, list[float]]:
    waits: list[float] = []

    async def record_sleep(seconds: float) -> None:
        waits.append(seconds)

    config = LLMConfig(models=[ModelConfig(name="m")], **settings)
    return RequestGate(config, sleep=record_sleep, rng=random.Random(0)), waits


def scripted(*outcomes):
    remaining = list(outcomes)

    async def attempt() -> Completion:
        outcome = remaining.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return attempt


OK = Completion(text="x", model="m", prompt_tokens=10, completion_tokens=5, cost_usd=0.25)


def test_transient_errors_are_retried_with_backoff_and_retry_after():
    gate, waits = make_gate(max_retries=3, backoff_initial_s=1.0, backoff_max_s=30.0)
    attempt = scripted(TransientLLMError("HTTP 500"), TransientLLMError("HTTP 429", retry_after_s=7.0), OK)
    assert asyncio.run(gate.run(attempt, "m")) == OK
    assert 0.5 <= waits[0] <= 1.0  # first backoff: 1 s with jitter in its upper half
    assert 7.0 <= waits[1] <= 7.7  # Retry-After honoured, plus at most 10% jitter
    assert gate.retries == 2


def test_backoff_doubles_and_is_capped():
    gate, _ = make_gate(backoff_initial_s=1.0, backoff_max_s=5.0)
    assert [gate.backoff_s(retry, None) <= min(5.0, 2**retry) for retry in range(6)] == [True] * 6
    assert gate.backoff_s(0, 100.0) == 5.0


def test_gives_up_after_max_retries():
    gate, waits = make_gate(max_retries=2, backoff_initial_s=0.0)
    attempt = scripted(*[TransientLLMError("HTTP 503")] * 3)
    with pytest.raises(LLMUnavailableError, match="failed 3 times; last error: HTTP 503"):
        asyncio.run(gate.run(attempt, "m"))
    assert len(waits) == 2


def test_auth_error_is_not_retried():
    gate, waits = make_gate(max_retries=5)
    with pytest.raises(LLMAuthError):
        asyncio.run(gate.run(scripted(LLMAuthError("bad key"), OK), "m"))
    assert waits == []


def test_timeout_counts_as_transient():
    gate, waits = make_gate(timeout_s=0.05, max_retries=1, backoff_initial_s=0.0)

    async def hang() -> Completion:
        await asyncio.sleep(10)
        return OK

    # A request that times out alone doubles the timeout for the next attempt.
    with pytest.raises(LLMUnavailableError, match="no answer within timeout_s = 0.1 s"):
        asyncio.run(gate.run(hang, "m"))
    assert gate.timeout_s == pytest.approx(0.2)


def test_a_timeout_with_requests_waiting_halves_the_in_flight_limit():
    gate, _ = make_gate(timeout_s=0.2, max_retries=0, max_in_flight=4)

    async def main() -> list:
        server = asyncio.Lock()

        async def one_at_a_time_server() -> Completion:  # answers take 0.15 s each and queue behind each other
            async with server:
                await asyncio.sleep(0.15)
            return OK

        return await asyncio.gather(*(gate.run(one_at_a_time_server, "m") for _ in range(4)), return_exceptions=True)

    results = asyncio.run(main())
    assert sum(isinstance(result, LLMUnavailableError) for result in results) >= 1
    assert gate.limit.limit == 1 and gate.limit.holders == 0
    assert gate.timeout_s == 0.2  # the limit adapted, not the timeout


def test_a_cancelled_request_gives_its_place_back():
    gate, _ = make_gate(max_in_flight=1)

    async def main() -> Completion:
        hanging = asyncio.ensure_future(gate.run(lambda: asyncio.sleep(10), "m"))
        await asyncio.sleep(0.05)
        hanging.cancel()
        return await asyncio.wait_for(gate.run(scripted(OK), "m"), 1.0)

    assert asyncio.run(main()) == OK
    assert gate.limit.holders == 0


@pytest.mark.parametrize(("cap", "message"), [({"max_cost_usd": 0.5}, "max_cost_usd"), ({"max_tokens": 30}, "max_tokens")])
def test_budget_stops_before_the_request_that_would_start_past_it(cap, message):
    gate, _ = make_gate(**cap)
    calls = []

    async def attempt() -> Completion:
        calls.append(1)
        return OK

    async def spend():
        for _ in range(10):
            await gate.run(attempt, "m")

    with pytest.raises(LLMBudgetExhausted, match=message):
        asyncio.run(spend())
    assert len(calls) == 2  # 0.25 + 0.25 reaches $0.5; 15 + 15 reaches 30 tokens
    assert gate.budget.spent_tokens == 30


def test_in_flight_limit():
    gate, _ = make_gate(max_in_flight=3)
    peak = 0

    async def attempt() -> Completion:
        nonlocal peak
        peak = max(peak, gate.in_flight)
        await asyncio.sleep(0.01)
        return OK

    async def many():
        await asyncio.gather(*(gate.run(attempt, "m") for _ in range(12)))

    asyncio.run(many())
    assert peak == 3


def test_retry_after_header_forms():
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_s({"retry-after": "soon"}) is None and retry_after_s(None) is None


def test_error_detail_redacts_the_key(monkeypatch):
    monkeypatch.setenv("LAB_KEY", "sk-live-1234567890")
    body = {"error": {"message": "Incorrect API key provided: sk-live-1234567890."}}
    assert error_detail(body, "fallback", ["LAB_KEY"]) == "Incorrect API key provided: ***."
    assert error_detail("not a dict", "fallback", ["LAB_KEY"]) == "fallback"
