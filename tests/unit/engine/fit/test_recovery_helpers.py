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


# ------------------------------------------------------------------ the loop every task's verify runs

GAUSSIAN = '''def model(params, x):
    PARAMS = {"mu": (-5.0, 5.0), "sigma": (0.1, 5.0)}
    return params["mu"], params["sigma"]
'''


def gaussian_simulate(params, row, rng):
    """200 normal draws per row, masked like the row."""
    return {"x": rng.normal(params["mu"], params["sigma"], size=row["mask"].shape).astype(np.float32),
            "mask": row["mask"]}


def gaussian_neg_log_likelihood(params, data):
    import jax.numpy as jnp

    z = (data["x"] - params["mu"]) / params["sigma"]
    return jnp.sum(data["mask"] * (0.5 * z**2 + jnp.log(params["sigma"])))


def test_parameter_recovery_refits_sets_drawn_around_each_group_with_a_real_fit():
    from engine.fit import parameter_recovery, refit_by_likelihood

    spec = read_params(GAUSSIAN, "model")
    fitted = [{"mu": -1.0, "sigma": 1.0}, {"mu": 2.0, "sigma": 2.0}]  # two groups
    rows = [{"mask": np.ones(200, np.float32)}, {"mask": np.ones(200, np.float32)}]
    refit = refit_by_likelihood(gaussian_neg_log_likelihood, spec, restarts=2, max_steps=100, optimizer="lbfgs")
    result = parameter_recovery(spec, fitted, rows, gaussian_simulate, refit, n_sets=8, spread=0.3, seed=0)
    assert result.record().keys() == {"recovery", "recovery_pairs", "recovery_failed_sets", "recovery_circular",
                                      "recovery_redrawn", "recovery_unmeasured_sets"}
    assert result.redrawn == {} and result.unmeasured_sets == [] and result.record()["recovery_redrawn"] == {}
    assert result.failed_sets == [] and result.circular == []
    assert result.recovery["mu"] > 0.95 and result.recovery["sigma"] > 0.9, result.recovery
    # set k is drawn around group k mod 2: the even sets near mu = -1, the odd ones near mu = 2
    assert all(g["mu"] < 0.5 for g in result.generating[0::2]) and all(g["mu"] > 0.5 for g in result.generating[1::2])
    assert all(abs(g["mu"] - r["mu"]) < 0.5 for g, r in zip(result.generating, result.recovered))
    again = parameter_recovery(spec, fitted, rows, gaussian_simulate, refit, n_sets=8, spread=0.3, seed=0)
    assert again.generating == result.generating  # deterministic given the seed


def test_parameter_recovery_takes_sets_from_a_refit_and_lists_the_failed_ones():
    from engine.fit import parameter_recovery

    spec = read_params(GAUSSIAN, "model")
    rows = [{"mask": np.ones(50, np.float32)}]

    def refit(stacked):  # the sample mean and s.d. of each set, and one set that "failed"
        x = stacked["x"]
        assert x.shape == (5, 50)  # the simulated rows, stacked on a leading set axis
        sets = [{"mu": float(row.mean()), "sigma": float(row.std())} for row in x]
        sets[2] = {"mu": float("nan"), "sigma": 1.0}
        return sets

    result = parameter_recovery(spec, [{"mu": 0.0, "sigma": 1.0}], rows, gaussian_simulate, refit, n_sets=5,
                                spread=1.0, seed=1)
    assert result.failed_sets == [2] and all(len(pairs) == 4 for pairs in result.pairs.values())
    with pytest.raises(ValueError, match="2 fitted parameter sets but 1 data rows"):
        parameter_recovery(spec, [{"mu": 0.0, "sigma": 1.0}] * 2, rows, gaussian_simulate, refit, n_sets=5,
                           spread=1.0, seed=1)
    with pytest.raises(ValueError, match="returned 4 parameter sets for 5"):
        parameter_recovery(spec, [{"mu": 0.0, "sigma": 1.0}], rows, gaussian_simulate, lambda s: refit(s)[:4],
                           n_sets=5, spread=1.0, seed=1)


def test_a_set_whose_simulated_data_the_score_cannot_measure_is_drawn_again_and_listed():
    """The rule sees only the simulated data; the sets it accepts are the same draws as without it."""
    from engine.fit import parameter_recovery

    spec = read_params(GAUSSIAN, "model")
    rows = [{"mask": np.ones(50, np.float32)}]

    def refit(stacked):
        return [{"mu": float(row.mean()), "sigma": float(row.std())} for row in stacked["x"]]

    def unmeasurable(row):
        mean = float(np.mean(row["x"]))
        return f"mean {mean:.2f}, above the 1.0 this score measures" if mean > 1.0 else ""

    options = dict(n_sets=12, spread=1.0, seed=1)
    plain = parameter_recovery(spec, [{"mu": 0.0, "sigma": 1.0}], rows, gaussian_simulate, refit, **options)
    redrawn_sets = [k for k, g in enumerate(plain.recovered) if g["mu"] > 1.0]
    assert redrawn_sets  # this seed draws some
    result = parameter_recovery(spec, [{"mu": 0.0, "sigma": 1.0}], rows, gaussian_simulate, refit,
                                unmeasurable=unmeasurable, **options)
    assert sorted(result.redrawn) == redrawn_sets
    assert all(reasons and all(r.startswith("mean ") and r.endswith("this score measures") for r in reasons)
               for reasons in result.redrawn.values())
    assert all(r["mu"] <= 1.0 for r in result.recovered)
    for k in range(12):
        if k not in redrawn_sets:
            assert result.generating[k] == plain.generating[k] and result.recovered[k] == plain.recovered[k]
    assert result.record()["recovery_redrawn"] == {str(k): v for k, v in result.redrawn.items()}
    assert result.unmeasured_sets == []

    # a rule no draw passes: each set is drawn 1 + max_redraws times, keeps its last draw and is listed
    never = parameter_recovery(spec, [{"mu": 0.0, "sigma": 1.0}], rows, gaussian_simulate, refit, n_sets=3,
                               spread=1.0, seed=1, unmeasurable=lambda row: "never", max_redraws=2)
    assert never.redrawn == {k: ["never"] * 2 for k in range(3)} and len(never.recovered) == 3
    assert never.unmeasured_sets == [0, 1, 2] and never.record()["recovery_unmeasured_sets"] == [0, 1, 2]


def test_posterior_predictive_draws_replicates_at_each_groups_fit():
    from engine.fit import posterior_predictive

    rows = [{"mask": np.ones(30, np.float32)}, {"mask": np.ones(30, np.float32)}]
    draws = posterior_predictive([{"mu": -3.0, "sigma": 0.1}, {"mu": 3.0, "sigma": 0.1}], rows, gaussian_simulate,
                                 n_draws=4, seed=0)
    assert [d["x"].shape for d in draws] == [(4, 30), (4, 30)]
    assert abs(draws[0]["x"].mean() + 3.0) < 0.1 and abs(draws[1]["x"].mean() - 3.0) < 0.1
    assert not np.array_equal(draws[0]["x"][0], draws[0]["x"][1])  # replicates, not copies
