"""The real openai and anthropic SDKs against the loopback server in tests/llm_server.py."""

import asyncio
import logging
import sys
import time
import traceback
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for tests.llm_server

from engine.llm import (  # noqa: E402
    LLMAuthError,
    LLMBudgetExhausted,
    LLMConfig,
    LLMResponseError,
    LLMUnavailableError,
    ModelConfig,
    ModelMix,
)
from engine.proposers.base import PromptContext, Shot  # noqa: E402
from engine.proposers.llm import LLMProposer, build_llm_proposer  # noqa: E402
from tests.llm_server import LLMServer, Reply, copy_best_shot, vary_best_shot  # noqa: E402

SECRET = "sk-test-0123456789abcdefSECRET"
KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
PROVIDERS = ["openai", "anthropic"]


@pytest.fixture
def server():
    with LLMServer(answer=lambda request: "def agent(x):\n    return x\n") as running:
        yield running


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    for name in KEY_ENV.values():
        monkeypatch.setenv(name, SECRET)


def make_mix(provider: str, server: LLMServer, **settings) -> ModelMix:
    settings = {"backoff_initial_s": 0.01, "max_retries": 3, "timeout_s": 5.0, **settings}
    model = ModelConfig(name="test-model", temperature=0.3, max_tokens=256, input_usd_per_mtok=1e4,
                        output_usd_per_mtok=2e4)
    base_url = server.openai_base_url if provider == "openai" else server.anthropic_base_url
    return ModelMix.from_config(LLMConfig(provider=provider, base_url=base_url, models=[model], **settings))


def complete(mix: ModelMix, prompt: str = "write a model", times: int = 1, concurrently: bool = False):
    async def go():
        try:
            if concurrently:
                return await asyncio.gather(*(mix.clients[0].complete(prompt) for _ in range(times)))
            return [await mix.clients[0].complete(prompt) for _ in range(times)]
        finally:
            await mix.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_success_reports_text_usage_and_cost(provider, server):
    server.push(Reply(text="def agent(x):\n    return x\n", prompt_tokens=100, completion_tokens=50))
    [completion] = complete(make_mix(provider, server), "write a model")
    assert completion.text == "def agent(x):\n    return x\n" and completion.model == "test-model"
    assert (completion.prompt_tokens, completion.completion_tokens) == (100, 50)
    assert completion.cost_usd == pytest.approx((100 * 1e4 + 50 * 2e4) / 1e6)
    [request] = server.requests
    assert request.api == provider and request.prompt == "write a model" and request.model == "test-model"
    assert request.system.startswith("You improve Python models")
    assert request.body["temperature"] == 0.3
    assert request.body.get("max_tokens", request.body.get("max_completion_tokens")) == 256
    assert SECRET in request.headers.get("authorization", "") + request.headers.get("x-api-key", "")
    assert request.headers.get("x-stainless-retry-count", "0") == "0"
    assert not completion.truncated
    server.push(Reply(text="def agent(x):\n    y = x", truncated=True))
    [cut] = complete(make_mix(provider, server))
    assert cut.truncated


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retry_after_is_honoured(provider, server):
    server.push(Reply.rate_limited(retry_after_s=0.4))
    started = time.perf_counter()
    complete(make_mix(provider, server))
    assert 0.4 <= time.perf_counter() - started < 2.0
    assert len(server.requests) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_server_error_is_retried_then_succeeds(provider, server):
    server.push(Reply.server_error(500), Reply.server_error(503))
    [completion] = complete(make_mix(provider, server))
    assert completion.text.startswith("def agent") and len(server.requests) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unauthorized_stops_at_once_and_names_the_variable(provider, server):
    server.push(Reply(status=401, error_message=f"Incorrect API key provided: {SECRET}."))
    with pytest.raises(LLMAuthError, match=f"rejected the API key from \\${KEY_ENV[provider]}") as caught:
        complete(make_mix(provider, server, max_retries=5))
    assert len(server.requests) == 1
    assert "Incorrect API key provided: ***." in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("cap", [{"max_cost_usd": 2.5}, {"max_tokens": 250}])
def test_budget_stops_before_the_next_request(provider, cap, server):
    # Each answer: 100 prompt + 50 completion tokens = 150 tokens, $1 + $1 = $2.
    server.answer = lambda request: Reply(text="x", prompt_tokens=100, completion_tokens=50)
    with pytest.raises(LLMBudgetExhausted, match=next(iter(cap))):
        complete(make_mix(provider, server, **cap), times=5)
    assert len(server.requests) == 2  # $4 >= $2.5 and 300 >= 250 tokens after two


@pytest.mark.parametrize("provider", PROVIDERS)
def test_timeout_is_retried(provider, server):
    server.push(Reply.slow(delay_s=2.0))
    started = time.perf_counter()
    [completion] = complete(make_mix(provider, server, timeout_s=0.3))
    assert completion.text.startswith("def agent")
    assert time.perf_counter() - started < 1.5 and len(server.requests) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_json_is_retried_then_reported(provider, server):
    server.push(Reply.malformed())
    [completion] = complete(make_mix(provider, server))
    assert completion.text.startswith("def agent")
    server.push(Reply.malformed(), Reply.malformed())
    with pytest.raises(LLMUnavailableError, match="malformed response body"):
        complete(make_mix(provider, server, max_retries=1))


def test_no_choices_is_a_failed_sample(server):
    server.push(Reply(body=b'{"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}'))
    with pytest.raises(LLMResponseError, match="without any choices"):
        complete(make_mix("openai", server))
    assert len(server.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_in_flight_limit_is_respected(provider, server):
    server.delay_s = 0.05
    complete(make_mix(provider, server, max_in_flight=3), times=12, concurrently=True)
    assert server.max_concurrent == 3 and len(server.requests) == 12


@pytest.mark.parametrize("provider", PROVIDERS)
def test_key_never_shown_in_errors_or_logs(provider, server, caplog):
    caplog.set_level(logging.DEBUG)
    texts = []
    for reply in [Reply.unauthorized(403), Reply(status=404, error_message=f"no model for key {SECRET}")]:
        server.push(reply)
        with pytest.raises(Exception) as caught:
            complete(make_mix(provider, server, max_retries=0))
        texts += [str(caught.value), repr(caught.value), "".join(traceback.format_exception(caught.value))]
    server.push(Reply.rate_limited(0.01), Reply.server_error(), Reply(status=500, error_message=SECRET))
    complete(make_mix(provider, server))  # retries log warnings
    mix = make_mix(provider, server)
    texts += [repr(mix), repr(mix.clients[0]), repr(LLMProposer(mix)), caplog.text]
    assert "retry 1 of 3" in caplog.text
    assert all(SECRET not in text for text in texts)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_llm_proposer_end_to_end(provider, server):
    server.answer = vary_best_shot
    seed = (Path(__file__).parents[2] / "tasks" / "bandit" / "seed.py").read_text()
    shown = seed.replace("def agent(", "def agent_v0(")
    context = PromptContext(
        island_id=0, function_name="agent", shots=(Shot(1, seed, -0.7),), next_version=1,
        text=shown + "\n\ndef agent_v1(params, state, choice, reward):\n",
    )
    base_url = server.openai_base_url if provider == "openai" else server.anthropic_base_url
    proposer = LLMProposer.from_config(LLMConfig(provider=provider, base_url=base_url, models=[{"name": "m"}]))

    async def go():
        try:
            return await proposer.propose(context)
        finally:
            await proposer.aclose()

    (proposal,) = asyncio.run(go())
    assert proposal.error == "" and proposal.proposer == "llm:m"
    # The seed with another bound, without the seed's docstring (copied, it no longer describes the program)
    # and without the seed's imports (unused, so not added).
    assert proposal.source.startswith("def agent(params, state, choice, reward):\n    PARAMS = {")
    assert '"""' not in proposal.source and proposal.source != seed[seed.index("def agent(") :]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_answer_that_only_copies_the_prompt_is_no_candidate(provider, server):
    server.answer = copy_best_shot
    seed = (Path(__file__).parents[2] / "tasks" / "bandit" / "seed.py").read_text()
    context = PromptContext(
        island_id=0, function_name="agent", shots=(Shot(1, seed, -0.7),), next_version=1,
        text=seed.replace("def agent(", "def agent_v0(") + "\n\ndef agent_v1(params, state, choice, reward):\n",
    )
    base_url = server.openai_base_url if provider == "openai" else server.anthropic_base_url
    proposer = LLMProposer.from_config(LLMConfig(provider=provider, base_url=base_url, models=[{"name": "m"}]))

    async def go():
        try:
            return await proposer.propose(context)
        finally:
            await proposer.aclose()

    (proposal,) = asyncio.run(go())
    assert proposal.source == "" and "repeats a program of the prompt unchanged" in proposal.error


def test_one_sdk_client_per_key_variable():
    config = LLMConfig(
        provider="anthropic",
        base_url="http://127.0.0.1:9",
        models=[ModelConfig(name="a"), ModelConfig(name="b", weight=3), ModelConfig(name="c", api_key_env="OTHER")],
    )
    mix = ModelMix.from_config(config, environ={"ANTHROPIC_API_KEY": "k1-secret", "OTHER": "k2-secret"})
    assert len(mix._sdk_clients) == 2 and mix.weights == (1.0, 3.0, 1.0)
    assert mix.clients[0]._sdk is mix.clients[1]._sdk is not mix.clients[2]._sdk
    assert len({id(client.gate) for client in mix.clients}) == 1
    assert "secret" not in repr(mix)
    asyncio.run(mix.aclose())


def test_build_llm_proposer_from_config():
    config = LLMConfig(provider="openai", base_url="http://127.0.0.1:9/v1", edit_format="diff",
                       models=[{"name": "small", "weight": 3}, {"name": "large"}])
    proposer = build_llm_proposer(config, environ={})  # a custom base_url may go without a key
    assert proposer.edit_format == "diff" and proposer.mix.weights == (3.0, 1.0)
    asyncio.run(proposer.aclose())
    with pytest.raises(LLMAuthError, match="OPENAI_API_KEY is not set"):
        build_llm_proposer(LLMConfig(models=[{"name": "gpt"}]), environ={})


def test_a_server_that_answers_one_at_a_time_slower_than_the_timeout_still_answers_every_request():
    """The real openai SDK against a server with one slot: requests queued past the timeout are cancelled at
    the server (their connection closed), the limit drops to one at a time, and every request is answered."""
    with LLMServer(answer=lambda request: "def agent(x):\n    return x\n", delay_s=0.4, one_at_a_time=True) as slow:
        mix = make_mix("openai", slow, timeout_s=1.0, max_in_flight=4, max_retries=4)
        completions = complete(mix, times=6, concurrently=True)
        assert len(completions) == 6
        assert mix.gate.limit.limit < 4  # halved after answers timed out in the server's queue
        assert slow.cancelled >= 1  # the timed-out requests were not left computing
        assert slow.answered == 6


@pytest.mark.parametrize("provider", PROVIDERS)
def test_chat_prompts_send_the_rules_as_system_text(provider, server):
    server.push(Reply(text="```python\ndef agent(x):\n    return x + 1\n```"))
    proposer = LLMProposer(make_mix(provider, server))
    context = PromptContext(island_id=0, function_name="agent", shots=(Shot(1, "def agent(x):\n    return x\n", 0.5),),
                            text="def agent_v0(x):\n    return x\n\n\ndef agent_v1(x):\n    pass\n", next_version=1,
                            chat_system="Rules for `agent`: ...", chat_user="Write `agent_v1`.")

    async def go():
        try:
            return await proposer.propose(context)
        finally:
            await proposer.aclose()

    (proposal,) = asyncio.run(go())
    assert proposal.source == "def agent(x):\n    return x + 1\n"
    [request] = server.requests
    assert request.system.startswith("You improve Python models") and request.system.endswith("Rules for `agent`: ...")
    assert request.prompt == "Write `agent_v1`."
