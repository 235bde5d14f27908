"""FakeLLM, the in-process twin of LLMClient, and ModelMix."""

import asyncio
import random

import pytest

from engine.llm import Completion, FakeLLM, LLMAuthError, LLMClient, LLMConfig, ModelConfig, ModelMix


def test_fake_llm_follows_its_script():
    fake = FakeLLM(["one two", LLMAuthError("bad key")], model="f", cost_usd_per_token=0.5)
    assert isinstance(fake, LLMClient)
    completion = asyncio.run(fake.complete("a b c"))
    assert completion == Completion(text="one two", model="f", prompt_tokens=3, completion_tokens=2, cost_usd=2.5)
    with pytest.raises(LLMAuthError):
        asyncio.run(fake.complete("again"))
    with pytest.raises(IndexError, match="ran out of answers after 2 prompts"):
        asyncio.run(fake.complete("more"))
    assert fake.prompts == ["a b c", "again", "more"]


def test_fake_llm_answer_function():
    fake = FakeLLM(lambda prompt: prompt.upper())
    assert asyncio.run(fake.complete("hi")).text == "HI"


def test_model_mix_draws_by_weight():
    cheap, strong = FakeLLM([]), FakeLLM([])
    mix = ModelMix([cheap, strong], [9.0, 1.0])
    rng = random.Random(0)
    draws = [mix.choose(rng) for _ in range(2000)]
    assert 0.86 < draws.count(cheap) / 2000 < 0.94


def test_model_mix_rejects_bad_weights():
    with pytest.raises(ValueError, match="one positive weight per client"):
        ModelMix([FakeLLM([])], [0.0])


def test_missing_key_stops_at_construction():
    config = LLMConfig(models=[ModelConfig(name="gpt", api_key_env="LAB_OPENAI_KEY")])
    with pytest.raises(LLMAuthError, match="environment variable LAB_OPENAI_KEY is not set"):
        ModelMix.from_config(config, environ={})
