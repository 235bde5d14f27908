"""Experiment configuration: task defaults, then a preset from configs/, then command-line flags.

Each package owns its section (`islands.IslandsConfig`, `sandbox.SandboxConfig`, `engine.llm.LLMConfig`);
`ExperimentConfig` composes them with the engine's own `RunConfig`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import ConfigError
from engine.llm.config import LLMConfig
from islands.config import IslandsConfig
from sandbox.config import SandboxConfig

__all__ = ["RunConfig", "ExperimentConfig", "load_experiment_config", "merge_layers"]


class RunConfig(BaseModel):
    """Budgets and the choice of proposer for one discovery run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_evals: int = Field(200, ge=0, description="Stop after this many evaluated candidates (the seed excluded).")
    max_hours: float | None = Field(None, gt=0)
    max_cost_usd: float | None = Field(None, ge=0)
    target_score: float | None = Field(None, description="Stop when the best held-out score reaches this.")
    seed: int = 0
    proposer: Literal["auto", "mutator", "llm"] = Field(
        "auto", description="auto: the LLM when llm is configured and its API key is set, else the mutator."
    )
    max_in_flight: int | None = Field(None, ge=1, description="Candidates proposed or evaluating at once; default 2 per worker.")
    max_duplicate_ratio: float = Field(20.0, gt=0, description="Give up after this many duplicate proposals per evaluation budget.")


class ExperimentConfig(BaseModel):
    """Everything a run needs besides the task."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    run: RunConfig = Field(default_factory=RunConfig)
    islands: IslandsConfig = Field(default_factory=IslandsConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    llm: LLMConfig | None = None


def merge_layers(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merges two config dicts; values of `override` win, nested mappings merge key by key."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_layers(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _validate(layer: Mapping[str, Any], origin: str) -> None:
    try:
        ExperimentConfig.model_validate(layer)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise ConfigError(f"{origin}: {problems}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """Reads a preset YAML; a missing file is an error, never a quiet switch to defaults."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file. Presets live in configs/, e.g. configs/local.yaml.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections, found {type(raw).__name__}.")
    return raw


def load_experiment_config(
    task_defaults: Mapping[str, Any],
    task_origin: str,
    preset: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """Merges task defaults, a preset file and command-line overrides, in that order, and validates each layer.

    Raises:
        ConfigError: naming the file (or "command line") and the key, e.g.
            "configs/x.yaml: islands.num_island: Extra inputs are not permitted".
    """
    layers: list[tuple[Mapping[str, Any], str]] = [(task_defaults, f"{task_origin} (defaults)")]
    if preset is not None:
        layers.append((read_config_file(preset), str(preset)))
    if overrides:
        layers.append((overrides, "command line"))
    merged: dict[str, Any] = {}
    for layer, origin in layers:
        _validate(layer, origin)
        merged = merge_layers(merged, layer)
    _validate(merged, "merged configuration")
    return ExperimentConfig.model_validate(merged)
