"""The llm config section: defaults, validation messages, prices."""

import pytest
from pydantic import ValidationError

from engine.llm import LLMConfig, ModelConfig


def test_defaults_and_key_variable():
    config = LLMConfig(models=[ModelConfig(name="gpt-4.1-mini")])
    assert config.provider == "openai" and config.edit_format == "rewrite"
    assert config.api_key_env(config.models[0]) == "OPENAI_API_KEY"
    anthropic = LLMConfig(provider="anthropic", models=[{"name": "claude", "api_key_env": "LAB_KEY"}])
    assert anthropic.api_key_env(anthropic.models[0]) == "LAB_KEY"


def test_typo_is_rejected_with_its_path():
    with pytest.raises(ValidationError, match="max_in_fligt"):
        LLMConfig(models=[ModelConfig(name="m")], max_in_fligt=3)
    with pytest.raises(ValidationError, match="at least 1 item"):
        LLMConfig(models=[])


def test_a_key_pasted_into_api_key_env_is_not_echoed():
    with pytest.raises(ValidationError) as caught:
        ModelConfig(name="m", api_key_env="sk-proj-abc123SECRET")
    assert "NAME of an environment variable" in str(caught.value)
    assert "SECRET" not in str(caught.value) and "SECRET" not in repr(caught.value)


def test_cost_from_prices_per_million_tokens():
    model = ModelConfig(name="m", input_usd_per_mtok=2.0, output_usd_per_mtok=8.0)
    assert model.cost_usd(1_000_000, 500_000) == pytest.approx(6.0)


def test_several_samples_per_request_only_where_the_api_has_them():
    models = [{"name": "m", "samples": 4}]
    assert LLMConfig(provider="openai", models=models).models[0].samples == 4
    with pytest.raises(ValidationError, match="Messages API returns one answer per request"):
        LLMConfig(provider="anthropic", models=models)
