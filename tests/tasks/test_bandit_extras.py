"""The bandit task's human-data variant (split by subject), its verify entry and its GRU ceiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.task.spec import load_task
from tests.tasks.candidates import candidate_from

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks/bandit"


def small_synthetic_splits():
    return load_task(TASK / "task.yaml").load_splits(n_sessions=10, n_trials=80)


def test_human_variant_loads_and_splits_by_subject():
    from tasks.data import load_rlddm_sequences

    task = load_task(TASK / "human.yaml")
    assert task.name == "bandit-human" and task.file.verify == "verify.py:verify"
    assert task.file.baselines["gru"].kind == "ceiling" and task.file.baselines["gru"].score == "ceiling.py:score"
    splits = task.load_splits()
    sequences = load_rlddm_sequences()
    # find each split's rows among the loader's sequences, then check no subject is in two splits
    subjects = {}
    for name, split in splits.items():
        found = set()
        for choices, mask in zip(split["choices"], split["mask"]):
            match = np.flatnonzero(
                np.all(sequences.choices == choices, axis=1) & np.all(sequences.mask == (mask > 0), axis=1)
            )
            assert match.size >= 1
            found.update(sequences.subject_ids[match].tolist())
        subjects[name] = found
    assert not (subjects["train"] & subjects["selection"]) and not (subjects["train"] & subjects["test"])
    assert not (subjects["selection"] & subjects["test"])
    assert sum(split["choices"].shape[0] for split in splits.values()) == 84


def test_environment_estimate_tracks_reward_rates():
    from tasks.bandit.verify import estimate_environment

    split = small_synthetic_splits()["train"]
    environment = estimate_environment(split)
    assert environment.shape == split["choices"].shape + (2,)
    assert np.all((environment > 0) & (environment < 1))


@pytest.mark.slow
def test_verify_recovers_parameters_and_returns_predictive_figures():
    task = load_task(TASK / "task.yaml")
    splits = task.load_splits()
    verify = task.resolve_entry(task.file.verify, "verify").load()
    truth = candidate_from(TASK / "baselines/forgetting_perseveration.py")
    result = verify(truth, splits["train"], splits["selection"], n_sets=6, restarts=4, posterior=True).record()
    assert set(result["recovery"]) == {"alpha", "beta", "forget", "perseveration"}
    # discover verify --posterior: NUTS quantiles bracket the maximum-likelihood fit, from chains that agree
    assert list(result["posterior"]) == ["all"]  # one pooled fit, the group of its fitted parameters
    for name, (low, median, high) in result["posterior"]["all"].items():
        assert low < result["fitted_params"]["all"][name] < high and low < median < high, (name, result["posterior"])
    assert result["posterior_diagnostics"]["r_hat_max"] < 1.05
    assert all(len(pairs) == 6 for pairs in result["recovery_pairs"].values())
    assert result["recovery_failed_sets"] == []
    # forgetting is the weakest identified parameter with 24 sessions; the others must be recovered well
    assert min(result["recovery"][name] for name in ("alpha", "beta", "perseveration")) > 0.7, result["recovery"]
    titles = [figure["title"] for figure in result["figures"]]
    assert any("P(stay)" in title for title in titles) and any("better arm" in title for title in titles)
    stay = result["figures"][0]
    data, model = stay["series"]
    assert data["role"] == "data" and model["role"] == "model" and data["x"] == ["win", "loss"]
    # the generating model reproduces win-stay / lose-shift within a few percentage points
    assert np.all(np.abs(np.array(data["y"]) - np.array(model["y"])) < 0.06), (data["y"], model["y"])
    for figure in result["figures"]:
        for series in figure["series"]:
            assert len(series["x"]) == len(series["y"]) > 0 and np.all(np.isfinite(series["y"]))


@pytest.mark.slow
def test_gru_ceiling_learns_above_chance_and_below_one():
    splits = small_synthetic_splits()
    ceiling = load_task(TASK / "task.yaml").resolve_entry("ceiling.py:score", "baselines.gru.score").load()
    result = ceiling(candidate_from(TASK / "baselines/gru.py"), splits["train"], splits["selection"])
    assert 0.55 < result.score < 1.0
    assert result.extra_scores["n_weights"] > 500 and result.extra_scores["best_step"] > 0
