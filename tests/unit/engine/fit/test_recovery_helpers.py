"""perturbed_parameters, recovery_table, failed_sets: draws stay in bounds, correlations and pairs are right."""

import math

import numpy as np
import pytest

from engine.fit import failed_sets, perturbed_parameters, read_params, recovery_table

SOURCE = '''def agent(params, x):
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}
    return params["alpha"] * x + params["beta"]
'''


def test_draws_stay_inside_the_bounds_and_spread_around_the_fit():
    spec = read_params(SOURCE, "agent")
    rng = np.random.default_rng(0)
    drawn = [perturbed_parameters(spec, {"alpha": 0.999, "beta": 10.0}, spread=0.5, rng=rng) for _ in range(200)]
    alphas, betas = np.array([d["alpha"] for d in drawn]), np.array([d["beta"] for d in drawn])
    assert np.all((alphas > 0) & (alphas < 1)) and np.all((betas > 0) & (betas < 20))
    assert abs(np.median(betas) - 10.0) < 1.0 and np.std(betas) > 0.5
    again = perturbed_parameters(spec, {"alpha": 0.999, "beta": 10.0}, spread=0.5, rng=np.random.default_rng(0))
    assert again == drawn[0]  # deterministic given the generator


def test_recovery_table_gives_pearson_r_and_the_pairs():
    spec = read_params(SOURCE, "agent")
    generating = [{"alpha": a, "beta": 5.0} for a in (0.1, 0.2, 0.3, 0.4)]
    recovered = [{"alpha": 2 * a + 0.01, "beta": b} for a, b in zip((0.1, 0.2, 0.3, 0.4), (4.0, 6.0, 5.0, 5.5))]
    recovery, pairs = recovery_table(spec, generating, recovered)
    assert recovery["alpha"] == pytest.approx(1.0)
    assert math.isnan(recovery["beta"])  # the generating beta never varies
    assert pairs["alpha"][0] == pytest.approx([0.1, 0.21])
    with pytest.raises(ValueError, match="4 generating parameter sets but 3 recovered"):
        recovery_table(spec, generating, recovered[:3])


def test_failed_refits_are_left_out_and_listed():
    spec = read_params(SOURCE, "agent")
    alphas = (0.1, 0.2, 0.3, 0.4, 0.5)
    generating = [{"alpha": a, "beta": 2.0 + 10 * a} for a in alphas]
    recovered = [{"alpha": a + 0.01, "beta": 2.0 + 10 * a} for a in alphas]
    recovered[1] = {"alpha": float("nan"), "beta": float("nan")}  # a refit that found no finite likelihood
    assert failed_sets(spec, recovered) == [1]
    recovery, pairs = recovery_table(spec, generating, recovered)
    assert recovery["alpha"] == pytest.approx(1.0) and recovery["beta"] == pytest.approx(1.0)
    assert [g for g, _ in pairs["alpha"]] == pytest.approx([0.1, 0.3, 0.4, 0.5])
    recovery, pairs = recovery_table(spec, generating[:3], recovered[:3])  # two sets left: no correlation
    assert math.isnan(recovery["alpha"]) and len(pairs["alpha"]) == 2
