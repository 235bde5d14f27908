"""Bayesian inner loop on a Gaussian mean with known sd, whose posterior is known in closed form."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from engine.fit import BayesianFitResult, FitError, ParamSpec, fit_bayesian

SPEC = ParamSpec.from_bounds({"mu": (-5.0, 5.0)})


def pointwise_nll(params, data):
    """(n_observations,) NLL of unit-variance Gaussian observations."""
    return 0.5 * (data["y"] - params["mu"]) ** 2 + 0.5 * math.log(2 * math.pi)


@pytest.fixture(scope="module")
def observations():
    rng = np.random.default_rng(0)
    return {"y": rng.normal(0.7, 1.0, 50).astype(np.float32)}, {"y": rng.normal(0.7, 1.0, 20).astype(np.float32)}


def analytic(train, held_out):
    """Posterior of mu (flat prior, the box is wide) and the held-out lppd under the posterior predictive."""
    y = train["y"].astype(float)
    mean, sd = y.mean(), 1.0 / math.sqrt(y.size)
    lppd = norm.logpdf(held_out["y"].astype(float), mean, math.sqrt(1.0 + sd**2)).sum()
    return mean, sd, lppd


@pytest.mark.slow
def test_nuts_recovers_the_closed_form_posterior(observations):
    train, held_out = observations
    result = fit_bayesian(pointwise_nll, SPEC, train, held_out=held_out, num_warmup=200, num_samples=500,
                          num_chains=2)
    assert isinstance(result, BayesianFitResult)
    mean, sd, lppd = analytic(train, held_out)
    draws = result.samples["mu"]
    assert draws.shape == (1000,)
    # Monte Carlo error of the mean is about sd / sqrt(ESS) ~ 0.01; of the sd about 5 %
    assert draws.mean() == pytest.approx(mean, abs=0.04)
    assert draws.std() == pytest.approx(sd, rel=0.15)
    assert result.held_out_lppd == pytest.approx(lppd, abs=0.3)
    assert result.diagnostics["r_hat_mu"] < 1.05
    assert result.diagnostics["divergences"] == 0


@pytest.mark.slow
def test_svi_recovers_the_closed_form_posterior(observations):
    train, held_out = observations
    result = fit_bayesian(pointwise_nll, SPEC, train, held_out=held_out, method="svi", svi_steps=1000,
                          svi_learning_rate=0.05, num_samples=2000)
    mean, sd, lppd = analytic(train, held_out)
    assert result.samples["mu"].mean() == pytest.approx(mean, abs=0.04)
    assert result.samples["mu"].std() == pytest.approx(sd, rel=0.2)
    assert result.held_out_lppd == pytest.approx(lppd, abs=0.3)


def test_unknown_method_is_rejected(observations):
    with pytest.raises(FitError, match="method = 'mh'; expected one of nuts, svi"):
        fit_bayesian(pointwise_nll, SPEC, observations[0], method="mh")
