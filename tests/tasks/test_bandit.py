"""The bandit task: deterministic synthetic data, and a real JAX fit that recovers the generating parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.task.spec import load_task
from tests.tasks.candidates import candidate_from

REPO = Path(__file__).resolve().parents[2]


def test_synthetic_data_is_deterministic_and_split_by_session():
    task = load_task(REPO / "tasks/bandit/task.yaml")
    first, second = task.load_splits(), task.load_splits()
    for split in ("train", "selection", "test"):
        np.testing.assert_array_equal(first[split]["choices"], second[split]["choices"])
    sizes = {split: first[split]["choices"].shape for split in first}
    assert sizes == {"train": (24, 200), "selection": (8, 200), "test": (8, 200)}


@pytest.mark.slow
def test_fit_recovers_the_generating_parameters():
    """Tolerances: alpha +/- 0.1, beta +/- 1.5, forget +/- 0.1, perseveration +/- 0.4 (40 sessions x 200 trials)."""
    from tasks.bandit.data import GROUND_TRUTH

    task = load_task(REPO / "tasks/bandit/task.yaml")
    splits = task.load_splits()
    everything = {key: np.concatenate([splits[s][key] for s in ("train", "selection", "test")]) for key in splits["train"]}
    score = task.score.load()
    truth = candidate_from(REPO / "tasks/bandit/baselines/forgetting_perseveration.py")
    result = score(truth, everything, splits["test"], seed=0)
    (fitted,) = result.fitted_params.values()  # one pooled group
    tolerance = {"alpha": 0.1, "beta": 1.5, "forget": 0.1, "perseveration": 0.4}
    for name, value in GROUND_TRUTH.items():
        assert abs(fitted[name] - value) <= tolerance[name], (name, fitted[name], value)


@pytest.mark.slow
def test_the_generating_model_beats_the_seed_on_held_out_sessions():
    task = load_task(REPO / "tasks/bandit/task.yaml")
    splits = task.load_splits()
    score = task.score.load()
    seed = score(candidate_from(REPO / "tasks/bandit/seed.py"), splits["train"], splits["selection"])
    truth = score(candidate_from(REPO / "tasks/bandit/baselines/forgetting_perseveration.py"), splits["train"], splits["selection"])
    assert 0.5 < seed.score < truth.score < 1.0
    assert set(seed.timings) >= {"compile_s", "fit_s", "score_s"}  # the keys every task's score uses
