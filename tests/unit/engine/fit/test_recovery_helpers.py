"""perturbed_parameters, recovery_table, failed_sets: draws stay in bounds, correlations and pairs are right."""

import math

import numpy as np
import pytest

from engine.fit import circular_correlation, failed_sets, perturbed_parameters, read_params, recovery_table

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


ANGLE_SOURCE = '''def tuning(params, x):
    PARAMS = {"pref_deg": (0.0, 360.0), "gain": (0.0, 20.0)}
    return params["gain"] * x
'''


def test_an_angle_recovered_across_the_wrap_counts_as_recovered():
    spec = read_params(ANGLE_SOURCE, "tuning")
    truth = [350.0, 355.0, 2.0, 10.0, 20.0]
    found = [352.0, 358.0, 1.0, 12.0, 19.0]  # 358 -> 1 crosses 0; every value within 3 deg of its truth
    generating = [{"pref_deg": t, "gain": 1.0 + k} for k, t in enumerate(truth)]
    recovered = [{"pref_deg": f, "gain": 1.0 + k} for k, f in enumerate(found)]
    pearson, _ = recovery_table(spec, generating, recovered)
    recovery, pairs = recovery_table(spec, generating, recovered, periods={"pref_deg": 360.0})
    assert pearson["pref_deg"] > 0.9  # a lucky linear r: every value sits on the same side of 0 as its truth
    assert recovery["pref_deg"] > 0.95
    assert [r for _, r in pairs["pref_deg"]] == pytest.approx([352.0, 358.0, 1.0, 12.0, 19.0])
    generating[1]["pref_deg"], recovered[1]["pref_deg"] = 359.0, 1.0  # now the truth and the fit straddle 0
    pearson, _ = recovery_table(spec, generating, recovered)
    recovery, pairs = recovery_table(spec, generating, recovered, periods={"pref_deg": 360.0})
    assert pearson["pref_deg"] < 0.6 and recovery["pref_deg"] > 0.95  # one wrapped set halves the linear r
    assert pairs["pref_deg"][1] == pytest.approx([359.0, 361.0])  # written next to its truth
    assert recovery["gain"] == pytest.approx(1.0)


def test_circular_correlation_of_unrelated_and_shifted_angles():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 360, 400)
    assert abs(circular_correlation(a, rng.uniform(0, 360, 400), 360.0)) < 0.15
    assert circular_correlation(a, (a + 90.0) % 360.0, 360.0) == pytest.approx(1.0)  # a constant shift is recovered
    assert math.isnan(circular_correlation(np.full(5, 10.0), a[:5], 360.0))


def test_periods_must_name_parameters():
    spec = read_params(ANGLE_SOURCE, "tuning")
    with pytest.raises(ValueError, match=r"periods given for \['phase'\]"):
        recovery_table(spec, [{"pref_deg": 1.0, "gain": 1.0}], [{"pref_deg": 1.0, "gain": 1.0}], periods={"phase": 6.28})
