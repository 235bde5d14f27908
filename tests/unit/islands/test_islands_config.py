"""IslandsConfig: published defaults and validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from islands import IslandsConfig


def test_defaults_are_the_published_ones() -> None:
    config = IslandsConfig()
    assert config.num_islands == 10
    assert config.functions_per_prompt == 2
    assert config.cluster_sampling_temperature_init == 0.1
    assert config.cluster_sampling_temperature_period == 30_000
    assert config.reset == "periodic" and config.reset_period_s == 4 * 3600
    assert config.cluster_score == "mean"


def test_typo_is_rejected_with_its_name() -> None:
    with pytest.raises(ValidationError, match="num_island"):
        IslandsConfig(num_island=4)


def test_config_is_frozen() -> None:
    with pytest.raises(ValidationError):
        IslandsConfig().num_islands = 3  # type: ignore[misc]


def test_periodic_reset_needs_a_period() -> None:
    with pytest.raises(ValidationError, match="set one of them"):
        IslandsConfig(reset="periodic", reset_period_s=None)
    assert IslandsConfig(reset="none", reset_period_s=None).reset == "none"
    assert IslandsConfig(reset_period_s=None, reset_period_evaluations=50).reset_period_evaluations == 50
