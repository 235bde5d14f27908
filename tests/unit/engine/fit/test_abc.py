"""SMC-ABC on a Gaussian mean with known variance, whose posterior is known in closed form."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.fit import FitError, ParamSpec, SimulationFitResult, fit_simulation_based

N_OBSERVATIONS = 20
SPEC = ParamSpec.from_bounds({"mu": (-5.0, 5.0)})


def simulate(params, key):
    return params["mu"] + jax.random.normal(key, (N_OBSERVATIONS,))


def summary(data):
    return jnp.mean(data, keepdims=True)


def test_recovers_the_closed_form_posterior_of_a_gaussian_mean():
    observed = np.random.default_rng(0).normal(1.3, 1.0, N_OBSERVATIONS).astype(np.float32)
    result = fit_simulation_based(simulate, summary, SPEC, observed, num_particles=1000, max_generations=8)
    assert isinstance(result, SimulationFitResult)
    # flat prior on a wide box: posterior N(mean, 1 / sqrt(n)) = N(mean, 0.224)
    posterior_mean, posterior_sd = float(observed.mean()), 1.0 / math.sqrt(N_OBSERVATIONS)
    assert result.mean()["mu"] == pytest.approx(posterior_mean, abs=0.05)
    assert result.sd()["mu"] == pytest.approx(posterior_sd, rel=0.2)
    assert result.weights.shape == (1000,)
    assert result.weights.sum() == pytest.approx(1.0)
    assert list(result.epsilons[1:]) == sorted(result.epsilons[1:], reverse=True)
    assert len(result.epsilons) >= 5
    # posterior-predictive mean of 20 draws lies about sqrt(2 / 20) away from the observed mean; in units of
    # the prior-predictive sd of the summary (about 10 / sqrt(12) = 2.9) that is about 0.11
    assert 0.02 < result.posterior_predictive_distance < 0.3
    # --posterior's entries: weighted quantiles of the closed-form N(mean, 0.224), 5 % and 95 % at -/+ 1.645 sd
    record = result.posterior_record()
    low, median, high = record["posterior"]["mu"]
    assert median == pytest.approx(posterior_mean, abs=0.06)
    assert low == pytest.approx(posterior_mean - 1.645 * posterior_sd, abs=0.12)
    assert high == pytest.approx(posterior_mean + 1.645 * posterior_sd, abs=0.12)
    assert record["posterior_diagnostics"]["method"] == "smc-abc" and record["posterior_diagnostics"]["particles"] == 1000


def test_a_model_far_from_the_held_out_data_gets_a_larger_distance():
    observed = np.random.default_rng(1).normal(1.0, 1.0, N_OBSERVATIONS).astype(np.float32)
    near = fit_simulation_based(simulate, summary, SPEC, observed, held_out=observed + 0.1, num_particles=300,
                                max_generations=4)
    far = fit_simulation_based(simulate, summary, SPEC, observed, held_out=observed + 3.0, num_particles=300,
                               max_generations=4)
    assert far.posterior_predictive_distance > near.posterior_predictive_distance + 0.5


def test_non_finite_observed_summary_is_rejected():
    with pytest.raises(FitError, match="summary of the observed data is not finite"):
        fit_simulation_based(simulate, summary, SPEC, np.full(N_OBSERVATIONS, np.nan, np.float32))
