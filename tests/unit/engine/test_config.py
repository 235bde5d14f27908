from pathlib import Path

import pytest

from engine.config import load_experiment_config, merge_layers
from engine.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def test_layers_merge_in_order_task_then_preset_then_flags(tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text("run: {max_evals: 50, seed: 3}\nsandbox: {num_workers: 4}\n")
    config = load_experiment_config(
        {"run": {"max_evals": 10, "target_score": 0.9}}, "task.yaml", preset, {"run": {"max_evals": 7}}
    )
    assert config.run.max_evals == 7  # flag wins
    assert config.run.seed == 3  # preset over default
    assert config.run.target_score == 0.9  # task default kept
    assert config.sandbox.num_workers == 4


def test_an_unknown_key_names_the_key_and_its_file(tmp_path):
    preset = tmp_path / "typo.yaml"
    preset.write_text("islands: {num_island: 3}\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: islands.num_island: Extra inputs are not permitted"):
        load_experiment_config({}, "task.yaml", preset)


def test_a_missing_preset_is_an_error_not_defaults(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_experiment_config({}, "task.yaml", tmp_path / "nope.yaml")


@pytest.mark.parametrize("preset", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_preset_is_valid(preset):
    load_experiment_config({}, "task.yaml", preset)


def test_merge_is_deep():
    assert merge_layers({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_the_llm_flags_of_discover_run_make_a_config_layer():
    import typer

    from engine.cli import _overrides

    layer = _overrides(proposer="openai", model="qwen", base_url="http://127.0.0.1:8080/v1", llm_max_in_flight=1,
                       timeout_s=600.0, temperature=None, max_tokens=1024)
    assert layer["llm"] == {"provider": "openai", "base_url": "http://127.0.0.1:8080/v1", "max_in_flight": 1,
                            "timeout_s": 600.0, "models": [{"name": "qwen", "temperature": 1.0, "max_tokens": 1024}]}
    config = load_experiment_config({}, "task.yaml", overrides=layer)
    assert config.llm.max_in_flight == 1 and config.llm.models[0].max_tokens == 1024
    with pytest.raises(typer.BadParameter, match="need --proposer openai or --proposer anthropic"):
        _overrides(timeout_s=30.0)
    with pytest.raises(typer.BadParameter, match="give --model too"):
        _overrides(proposer="openai", temperature=0.5)
