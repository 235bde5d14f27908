"""The benchmark-only loader of the unlicensed mouse bandit data reads the mirror directly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH_LOADER = Path(__file__).resolve().parents[3] / "bench" / "data_mouse.py"


def _data_mouse():
    spec = importlib.util.spec_from_file_location("data_mouse", BENCH_LOADER)
    module = importlib.util.module_from_spec(spec)
    sys.modules["data_mouse"] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_mouse_bandit_sessions_from_the_mirror(data_mirror: Path) -> None:
    data_mouse = _data_mouse()
    sessions = data_mouse.load_mouse_sessions()
    assert sessions.choice_right.shape == (429, 946) and sessions.mask.sum() == 215723
    assert len(set(sessions.mice)) == 14
    assert {phase: sessions.phases.count(phase) for phase in data_mouse.BANDIT_PHASES} == {
        "bandit_90_10": 172, "bandit_80_20": 180, "bandit_70_30": 77,
    }
    real = sessions.mask
    assert set(np.unique(sessions.choice_right[real]).tolist()) == {0, 1}
    assert np.allclose(sessions.p_right[real] + sessions.p_left[real], 1.0)
    assert sessions.init_to_decision_s[real].min() > 0.0


def test_mouse_loader_names_the_missing_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCOVER_DATA_MIRROR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="mouse_2abt_trials.csv.gz not found. These unlicensed data"):
        _data_mouse().load_mouse_sessions(subset=1)
