"""The ddm task: the Fokker-Planck first-passage solver against the analytic densities, the data split, and a real
fit on small subsets (the synthetic twin's generating model beats the seed and is recovered)."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from tasks.ddm.first_passage import first_passage_densities, navarro_fuss_density
from engine.task.spec import load_task
from tests.tasks.candidates import candidate_from, module_from_source

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks/ddm"


@pytest.mark.parametrize(("drift", "tolerance"), [(0.0, 0.06), (3.0, 0.08), (8.0, 0.2)])
def test_fokker_planck_matches_navarro_fuss_for_fixed_bounds(drift, tolerance):
    """Tolerances: densities within 6-20 % of their peak (backward-Euler 5 ms steps smear the fastest decisions
    most), P(correct) within 0.002 of 1 / (1 + exp(-2 drift bound))."""
    dt, bound = 0.005, 0.9
    n = 401
    time_s = np.arange(n) * dt
    upper, lower = first_passage_densities(jnp.full((1, n), drift, jnp.float32), jnp.full((1, n), bound, jnp.float32), dt)
    analytic = navarro_fuss_density(time_s[1:] - dt / 2, drift, bound)
    assert np.abs(np.asarray(upper[0, 1:]) - analytic).max() <= tolerance * analytic.max()
    analytic_lower = navarro_fuss_density(time_s[1:] - dt / 2, -drift, bound)
    assert np.abs(np.asarray(lower[0, 1:]) - analytic_lower).max() <= tolerance * analytic.max()
    p_correct = float(upper.sum() / (upper.sum() + lower.sum()))
    assert abs(p_correct - 1.0 / (1.0 + np.exp(-2 * drift * bound))) < 2e-3


def test_fokker_planck_agrees_with_the_engines_wiener_density():
    """The engine's analytic density (engine.fit.wiener_log_density) and the solver, drift 3, bound 0.9."""
    from engine.fit import wiener_log_density

    dt, n, drift, bound = 0.005, 401, 3.0, 0.9
    upper, _ = first_passage_densities(jnp.full((1, n), drift, jnp.float32), jnp.full((1, n), bound, jnp.float32), dt)
    t_mid = jnp.asarray(np.arange(1, n) * dt - dt / 2, jnp.float32)
    analytic = np.exp(np.asarray(wiener_log_density(t_mid, jnp.ones(n - 1, bool), drift, 2 * bound, 0.5, 0.0)))
    assert np.abs(np.asarray(upper[0, 1:]) - analytic).max() <= 0.08 * analytic.max()


def test_fokker_planck_cannot_create_probability():
    """Huge drift and bound (an advection-dominated grid) once let a central-difference scheme exceed 1."""
    n = 401
    upper, lower = first_passage_densities(jnp.full((2, n), 500.0, jnp.float32), jnp.full((2, n), 22.0, jnp.float32),
                                           0.005)
    assert np.all(np.asarray(upper) >= 0) and np.all(np.asarray(lower) >= 0)
    assert float((upper.sum() + lower.sum()) * 0.005) <= 2.0 * (1.0 + 1e-4)


def test_fokker_planck_conserves_probability_under_a_collapsing_bound():
    dt, n = 0.005, 401
    t = np.arange(n) * dt
    bound = jnp.asarray((1.5 * (1 - 0.9 * t / (t + 0.3)))[None, :], jnp.float32)
    upper, lower = first_passage_densities(jnp.full((1, n), 2.0, jnp.float32), bound, dt)
    assert np.all(np.asarray(upper) >= 0) and np.all(np.asarray(lower) >= 0)
    assert abs(float((upper.sum() + lower.sum()) * dt) - 1.0) < 0.01


def test_split_is_deterministic_blocked_and_disjoint():
    from tasks.ddm.data import load

    first, second = load(source="roitman", subset=300, block_trials=20), load(source="roitman", subset=300, block_trials=20)
    for split in ("train", "selection", "test"):
        for key in first[split]:
            np.testing.assert_array_equal(first[split][key], second[split][key])
    counts = {split: first[split]["mask"].sum(axis=1).tolist() for split in first}
    assert counts == {"train": [180.0, 180.0], "selection": [60.0, 60.0], "test": [60.0, 60.0]}
    assert set(np.unique(first["train"]["coherence_index"])) <= set(range(6))


def test_synthetic_twin_is_deterministic():
    from tasks.ddm.data import load

    first, second = load(source="synthetic", subset=200, block_trials=20), load(source="synthetic", subset=200, block_trials=20)
    np.testing.assert_array_equal(first["train"]["rt_s"], second["train"]["rt_s"])
    real = load(source="roitman", subset=200, block_trials=20)
    assert not np.array_equal(first["train"]["rt_s"], real["train"]["rt_s"])


def test_wrong_output_shape_is_a_one_sentence_value_error():
    from tasks.ddm.score import check_decision

    source = (TASK / "seed.py").read_text().replace("return drift, bound, params", "return drift[0], bound, params")
    candidate = module_from_source(source)
    with pytest.raises(ValueError, match=r"decision returned drift of shape \(401,\); expected \(6, 401\)"):
        check_decision(candidate.decision, ("k", "bound", "nondecision_s"), 6)


@pytest.mark.slow
def test_synthetic_ground_truth_beats_the_seed_and_is_recovered():
    """On 1,000 synthetic trials per monkey: the collapsing-bound model beats the fixed-bound seed on held-out
    trials, and its fit recovers k within 25 %, bound within 0.3, nondecision_s within 0.04 s."""
    from tasks.ddm.data import GROUND_TRUTH

    task = load_task(TASK / "synthetic.yaml")
    splits = task.load_splits(subset=1000, block_trials=50)
    score = task.score.load()
    seed = score(candidate_from(TASK / "seed.py"), splits["train"], splits["selection"])
    truth = score(candidate_from(TASK / "baselines/collapsing_bound.py"), splits["train"], splits["selection"])
    assert np.isfinite(seed.score) and truth.score > seed.score
    for monkey, params in GROUND_TRUTH.items():
        fitted = truth.fitted_params[monkey]
        assert abs(fitted["k"] - params["k"]) <= 0.25 * params["k"], (monkey, fitted)
        assert abs(fitted["bound"] - params["bound"]) <= 0.3, (monkey, fitted)
        assert abs(fitted["nondecision_s"] - params["nondecision_s"]) <= 0.04, (monkey, fitted)


@pytest.mark.slow
def test_verify_returns_recovery_and_well_formed_figures(monkeypatch):
    import tasks.ddm.verify as verify_module

    import functools

    import engine.fit.bayes as bayes

    monkeypatch.setattr(verify_module, "POSTERIOR_WARMUP", 40)  # a short chain: this checks the path, not the sampler
    monkeypatch.setattr(verify_module, "POSTERIOR_DRAWS", 40)
    # short trajectories too (at most 15 gradients per draw instead of 1023): this test was CI's slowest, and this
    # cuts it from 183 s to 121 s on 2 cores
    monkeypatch.setattr(bayes, "NUTS", functools.partial(bayes.NUTS, max_tree_depth=4))
    task = load_task(TASK / "task.yaml")
    splits = task.load_splits(subset=300, block_trials=20)
    run_verify = verify_module.verify
    result = run_verify(candidate_from(TASK / "seed.py"), splits["train"], splits["selection"], seed=0,
                        posterior=True).record()
    assert np.isfinite(result["score"])
    assert set(result["recovery"]) == {"k", "bound", "nondecision_s"}
    # --posterior: each monkey's NUTS quantiles, grouped like the fitted parameters
    assert set(result["posterior"]) == set(result["fitted_params"]) == {"B", "N"}
    assert all(set(group) == {"k", "bound", "nondecision_s"} for group in result["posterior"].values())
    assert all(low < median < high for group in result["posterior"].values() for low, median, high in group.values())
    assert result["posterior_diagnostics"]["draws"] == 80
    assert all(len(pairs) == 8 for pairs in result["recovery_pairs"].values())
    assert len(result["figures"]) == 4
    for figure in result["figures"]:
        assert {"title", "xlabel", "ylabel", "series"} <= set(figure)
        for series in figure["series"]:
            assert len(series["x"]) == len(series["y"]) and series["role"] in ("data", "model")
            assert series["kind"] in ("line", "scatter", "bar", "step")
