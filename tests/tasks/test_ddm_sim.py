"""The ddm_sim task: the summary statistics, the simulators' output checks, a real SMC-ABC fit that recovers a
known drift scale, and the synthetic twin's generating model beating the seed on held-out trials."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.task.spec import load_task
from tests.tasks.candidates import MIRROR, candidate_from, module_from

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks/ddm_sim"


@pytest.fixture
def data_mirror(monkeypatch):
    """Points the dataset registry at the offline mirror when no mirror is configured and the data are not cached."""
    if "DISCOVER_DATA_MIRROR" not in os.environ and MIRROR.is_dir():
        monkeypatch.setenv("DISCOVER_DATA_MIRROR", str(MIRROR))


@pytest.mark.parametrize("yaml_name", ["task.yaml", "synthetic.yaml"])
def test_spec_loads(yaml_name):
    spec = load_task(TASK / yaml_name)
    assert spec.function_name == "simulate"
    assert set(spec.baseline_sources()) == {"collapsing_bound"}  # the seed is the standard DDM


def test_summary_statistics_are_p_correct_and_correct_rt_quantiles():
    from tasks.ddm_sim.score import summary_statistics

    rt = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 9.0, 1.0, 1.0], np.float32)
    data = {"coherence_index": np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int32),
            "correct": np.array([1, 1, 1, 1, 1, 0, 0, 0], np.int32), "rt_s": rt,
            "mask": np.array([1, 1, 1, 1, 1, 1, 1, 0], np.float32)}
    stats = np.asarray(summary_statistics(data, 2)).reshape(2, 6)
    assert stats[0, 0] == pytest.approx(5 / 6)
    np.testing.assert_allclose(stats[0, 1:], [0.54, 0.62, 0.7, 0.78, 0.86], atol=1e-6)  # error RT 9.0 ignored
    assert stats[1, 0] == 0.0 and np.all(stats[1, 1:] == 3.0)  # no correct trial: the fixed placeholder


def test_malformed_simulator_output_is_a_value_error():
    from tasks.ddm_sim.score import check_simulator

    def simulate(params, coherence, key):
        return coherence[:3] > 0, coherence

    with pytest.raises(ValueError, match=r"simulate returned correct of shape \(3,\); expected \(240,\)"):
        check_simulator(simulate, ("k",), 240)


@pytest.mark.slow
def test_smc_abc_recovers_the_drift_scale_of_simulated_ddm_data():
    """The seed simulator at k = 12, bound = 0.9, nondecision 0.3 s, 200 trials per coherence, fitted with a larger
    budget than `score` uses (8 generations, 6,000 simulations; measured: k = 15.0 +/- 5.4, nondecision 0.30 s):
    the generating k lies within one posterior sd of the posterior mean, the posterior sd of k is under half the
    prior's (40 / sqrt(12) = 11.5), and the non-decision time is recovered within 50 ms. At `score`'s own budget
    (4 generations, 3,000 simulations) the posterior of k is still broad (sd about 9) and its mean about 20."""
    from engine.fit import fit_simulation_based, read_params
    from tasks.ddm.data import COHERENCES
    from tasks.ddm_sim.score import _design, summary_statistics

    seed = module_from(TASK / "seed.py")
    spec = read_params(seed.__source__, "simulate")
    levels = np.asarray(COHERENCES)
    coherence, index = _design(levels, 200)
    truth = {"k": jnp.float32(12.0), "bound": jnp.float32(0.9), "nondecision_s": jnp.float32(0.3)}
    correct, rt_s = seed.simulate(truth, coherence, jax.random.PRNGKey(7))
    observed = {"coherence_index": index, "correct": correct, "rt_s": rt_s, "mask": jnp.ones_like(rt_s)}
    fit_coherence, fit_index = _design(levels, 40)

    def simulate(params, key):
        c, rt = seed.simulate(params, fit_coherence, key)
        return {"coherence_index": fit_index, "correct": c, "rt_s": rt, "mask": jnp.ones_like(rt)}

    result = fit_simulation_based(simulate, lambda d: summary_statistics(d, levels.shape[0]), spec, observed,
                                  num_particles=200, max_generations=8, max_simulations=6000,
                                  min_acceptance_rate=0.05, seed=0)
    posterior, sd = result.mean(), result.sd()
    assert abs(posterior["k"] - 12.0) < sd["k"]
    assert sd["k"] < 0.5 * 40.0 / np.sqrt(12.0)
    assert posterior["nondecision_s"] == pytest.approx(0.3, abs=0.05)


@pytest.mark.slow
def test_the_twins_generating_model_beats_the_seed_on_held_out_trials(data_mirror):
    from tasks.ddm_sim.data import load
    from tasks.ddm_sim.score import score

    splits = load(source="synthetic", seed=0)
    small = {"num_particles": 100, "max_generations": 3, "max_simulations": 1000}
    seed_result = score(candidate_from(TASK / "seed.py"), splits["train"], splits["selection"], **small)
    truth = score(candidate_from(TASK / "baselines/collapsing_bound.py"), splits["train"], splits["selection"], **small)
    for result in (seed_result, truth):
        assert np.isfinite(result.score) and -2.49 < result.score < -1.5
        assert set(result.scores_per_test) == {f"{m}_coh{c:g}" for m in "BN" for c in
                                                  (0.0, 0.032, 0.064, 0.128, 0.256, 0.512)}
        assert set(result.fitted_params) == {"B", "N"}
        assert all(set(values) >= {"k", "nondecision_s"} for values in result.fitted_params.values())
    assert truth.score > seed_result.score + 0.005


@pytest.mark.slow
def test_verify_figures_are_well_formed_plain_data():
    """verify's figures (recovery refits are left to `discover verify`): two per monkey, data and model series."""
    from tasks.ddm_sim.verify import _figures

    seed = module_from(TASK / "seed.py")
    rng = np.random.default_rng(0)
    n = 120
    heldout = {"coherences": np.tile(np.array([0.0, 0.032, 0.064, 0.128, 0.256, 0.512], np.float32), (1, 1)),
               "coherence_index": rng.integers(0, 6, (1, n)).astype(np.int32),
               "correct": rng.integers(0, 2, (1, n)).astype(np.int32),
               "rt_s": rng.uniform(0.3, 1.2, (1, n)).astype(np.float32), "mask": np.ones((1, n), np.float32)}
    figures = _figures(seed.simulate, [{"k": 12.0, "bound": 0.9, "nondecision_s": 0.3}], heldout, seed=0)
    assert [f["title"] for f in figures] == ["Psychometric curve, monkey B (held-out trials)",
                                             "RT quantiles of correct choices, monkey B (held-out trials)"]
    for figure in figures:
        assert {s["role"] for s in figure["series"]} == {"data", "model"}
        for series in figure["series"]:
            assert len(series["x"]) == len(series["y"]) == 6
            assert all(isinstance(v, float) for v in series["y"])
    model_p = figures[0]["series"][1]["y"]
    assert model_p[-1] > 0.95 and abs(model_p[0] - 0.5) < 0.05  # 2000 simulated trials per coherence


@pytest.mark.slow
def test_verify_runs_recovery_through_the_engine_and_gives_each_monkeys_abc_posterior(data_mirror, monkeypatch):
    """The whole verify (its recovery refits each set by SMC-ABC), with --posterior's per-monkey quantiles."""
    import tasks.ddm_sim.verify as verify_module

    monkeypatch.setattr(verify_module, "RECOVERY_SETS", 2)  # 4 refits instead of 6, to keep the test short
    task = load_task(TASK / "synthetic.yaml")
    splits = task.load_splits()
    result = verify_module.verify(candidate_from(TASK / "seed.py", TASK / "synthetic.yaml"), splits["train"],
                                  splits["selection"], seed=0, posterior=True).record()
    assert set(result["recovery"]) == {"k", "bound", "nondecision_s"}
    assert all(len(pairs) == 4 for pairs in result["recovery_pairs"].values())
    assert set(result["posterior"]) == set(result["fitted_params"]) == {"B", "N"}
    assert all(set(group) == {"k", "bound", "nondecision_s"} for group in result["posterior"].values())
    for name, (low, median, high) in ((n, q) for group in result["posterior"].values() for n, q in group.items()):
        assert low <= median <= high, (name, result["posterior"])
    assert result["posterior_diagnostics"]["method"] == "smc-abc"
    assert 0.0 < result["posterior"]["B"]["nondecision_s"][1] < 1.0  # seconds, inside its bounds
