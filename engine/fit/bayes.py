"""Bayesian inner loop: posterior samples of a candidate's parameters with numpyro (NUTS or SVI).

The prior is uniform on the box that PARAMS declares. Sampling runs in the unconstrained space of
`ParamSpec.constrain`, where a uniform prior on `low + (high - low) * sigmoid(z)` is a standard logistic
prior on z. The held-out score is the log pointwise predictive density,
`lppd = sum_i log mean_s p(y_i | theta_s)`, over posterior samples theta_s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jax.scipy.special import logsumexp
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal

from engine.fit.errors import FitError
from engine.fit.params import ParamSpec

__all__ = ["BayesianFitResult", "combine_posteriors", "fit_bayesian", "posterior_summary"]

BAYESIAN_METHODS = ("nuts", "svi")


@dataclass(frozen=True, slots=True)
class BayesianFitResult:
    """Posterior samples of a candidate's parameters and their held-out predictive score.

    Attributes:
        samples: name -> (n_draws,) constrained posterior draws (chains concatenated).
        held_out_lppd: log pointwise predictive density (nats) of `held_out`; None without held-out data.
            Pointwise when `neg_log_likelihood` returns per-observation values, else the log predictive
            density of the held-out set as one observation.
        diagnostics: for NUTS, "r_hat_<name>" (split Gelman-Rubin; needs >= 2 chains), "ess_<name>" and
            "divergences"; for SVI, "final_elbo_loss".
        timings: wall seconds {"fit_s"} (compilation included: numpyro compiles inside its run).
    """

    samples: dict[str, np.ndarray]
    held_out_lppd: float | None
    diagnostics: dict[str, float]
    timings: dict[str, float]


def fit_bayesian(
    neg_log_likelihood: Callable[[dict[str, jax.Array], Any], jax.Array],
    spec: ParamSpec,
    data: Any,
    *,
    held_out: Any = None,
    method: str = "nuts",
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 2,
    svi_steps: int = 2000,
    svi_learning_rate: float = 0.01,
    seed: int = 0,
) -> BayesianFitResult:
    """Samples the posterior of `spec`'s parameters under a uniform prior on their box.

    Args:
        neg_log_likelihood: (params, data) -> NLL in nats, either a scalar total or an (n_observations,)
            array of per-observation values (summed for the posterior; used pointwise for the held-out lppd).
        spec: the free parameters and their bounds.
        data: pytree of arrays for the posterior.
        held_out: optional pytree like `data`, scored by the log pointwise predictive density.
        method: "nuts" (numpyro NUTS, chains vectorized in one program) or "svi" (a multivariate normal
            approximation in unconstrained space fitted with Adam, then sampled).
        num_warmup: NUTS warm-up steps per chain.
        num_samples: posterior draws per chain (NUTS) or in total (SVI).
        num_chains: NUTS chains.
        svi_steps, svi_learning_rate: SVI optimization steps and Adam's initial step size (cosine decay to 1 %).
        seed: PRNG seed; the result is deterministic given it.

    Returns:
        the posterior draws, held-out lppd and diagnostics.

    Raises:
        FitError when the method is unknown or the posterior draws are not finite.
    """
    if method not in BAYESIAN_METHODS:
        raise FitError(f"method = {method!r}; expected one of {', '.join(BAYESIAN_METHODS)}.")
    data = jax.tree.map(jnp.asarray, data)
    key_fit, key_draw = jax.random.split(jax.random.PRNGKey(seed))

    def model(data):
        z = numpyro.sample("z", dist.Logistic(jnp.zeros(spec.size), 1.0).to_event(1))
        numpyro.factor("log_likelihood", -jnp.sum(neg_log_likelihood(spec.constrain(z), data)))

    start = time.perf_counter()
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        # numpyro's internals rely on implicit promotion; keep them working when a caller sets it strict
        z_draws, diagnostics = _sample(model, spec, data, method, num_warmup, num_samples, num_chains, svi_steps,
                                       svi_learning_rate, key_fit, key_draw)
    if not bool(jnp.all(jnp.isfinite(z_draws))):
        raise FitError(f"{method} gave non-finite posterior draws; check the likelihood for NaN or overflow.")

    held_out_lppd = None
    if held_out is not None:
        held_out = jax.tree.map(jnp.asarray, held_out)

        def log_likelihood(z):
            return -jnp.atleast_1d(neg_log_likelihood(spec.constrain(z), held_out))

        per_draw = jax.jit(jax.vmap(log_likelihood))(z_draws)  # (n_draws, n_observations)
        n_draws, n_observations = per_draw.shape
        held_out_lppd = float(jnp.sum(logsumexp(per_draw, axis=0))) - n_observations * math.log(n_draws)
    fit_s = time.perf_counter() - start
    samples = {name: np.asarray(value, dtype=float) for name, value in spec.constrain(z_draws).items()}
    return BayesianFitResult(samples=samples, held_out_lppd=held_out_lppd, diagnostics=diagnostics,
                             timings={"fit_s": fit_s})


def _sample(model, spec, data, method, num_warmup, num_samples, num_chains, svi_steps, svi_learning_rate,
            key_fit, key_draw):
    """Returns unconstrained posterior draws (n_draws, n) and diagnostics."""
    diagnostics: dict[str, float] = {}
    if method == "nuts":
        mcmc = MCMC(NUTS(model), num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                    chain_method="vectorized", progress_bar=False)
        mcmc.run(key_fit, data, extra_fields=("diverging",))
        z_by_chain = mcmc.get_samples(group_by_chain=True)["z"]  # (chains, draws, n)
        diagnostics["divergences"] = float(jnp.sum(mcmc.get_extra_fields()["diverging"]))
        constrained_by_chain = spec.constrain(z_by_chain)
        for name in spec.names:
            chains = np.asarray(constrained_by_chain[name])
            if num_chains >= 2:
                diagnostics[f"r_hat_{name}"] = float(split_gelman_rubin(chains))
            diagnostics[f"ess_{name}"] = float(effective_sample_size(chains))
        return z_by_chain.reshape(-1, spec.size), diagnostics
    guide = AutoMultivariateNormal(model)
    # the step size decays to 1 % so that the final approximation is not jittered by the ELBO's sampling noise
    schedule = optax.cosine_decay_schedule(svi_learning_rate, svi_steps, alpha=0.01)
    svi = SVI(model, guide, numpyro.optim.optax_to_numpyro(optax.adam(schedule)), Trace_ELBO())
    svi_result = svi.run(key_fit, svi_steps, data, progress_bar=False)
    z_draws = guide.sample_posterior(key_draw, svi_result.params, sample_shape=(num_samples,), data=data)["z"]
    diagnostics["final_elbo_loss"] = float(svi_result.losses[-1])
    return z_draws, diagnostics


def posterior_summary(neg_log_likelihood: Callable[[dict[str, jax.Array], Any], jax.Array], spec: ParamSpec,
                      data: Any, *, num_warmup: int = 300, num_samples: int = 300, num_chains: int = 2,
                      seed: int = 0) -> dict[str, Any]:
    """Returns a verify record's posterior entries: NUTS under a uniform prior on PARAMS' box, summarised.

    `discover verify --posterior` asks a task's verify for them (`posterior=True`); a task with a likelihood
    passes its training negative log-likelihood here and merges the result into what it returns.

    Returns:
        {"posterior": {name: [5 %, 50 %, 95 % quantile]}, "posterior_diagnostics": {"r_hat_max", "ess_min",
        "divergences", "draws", "fit_s"}}; r_hat_max is NaN with one chain.
    """
    result = fit_bayesian(neg_log_likelihood, spec, data, method="nuts", num_warmup=num_warmup,
                          num_samples=num_samples, num_chains=num_chains, seed=seed)
    quantiles = {name: [float(q) for q in np.quantile(draws, (0.05, 0.5, 0.95))]
                 for name, draws in result.samples.items()}
    diagnostics = result.diagnostics
    r_hats = [value for key, value in diagnostics.items() if key.startswith("r_hat_")]
    return {"posterior": quantiles, "posterior_diagnostics": {
        "method": "nuts",
        "r_hat_max": max(r_hats) if r_hats else float("nan"),
        "ess_min": min(value for key, value in diagnostics.items() if key.startswith("ess_")),
        "divergences": diagnostics.get("divergences", 0.0),
        "draws": num_samples * num_chains,
        "fit_s": result.timings["fit_s"],
    }}


def combine_posteriors(by_group: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Merges per-group posterior entries (`posterior_summary`, `SimulationFitResult.posterior_record`) into one.

    Args:
        by_group: group label -> that group's {"posterior", "posterior_diagnostics"}; use the labels of the
            task's fitted parameters ({group: {name: value}}), so that both name a parameter the same way.

    Returns:
        {"posterior": {group: {name: [5 %, 50 %, 95 %]}}, "posterior_diagnostics": ...}; the diagnostics are the
        worst over groups (largest r-hat, smallest ESS), summed for divergences and seconds, and the first
        group's for the rest.
    """
    posterior, diagnostics = {}, {}
    for group, entries in by_group.items():
        posterior[str(group)] = dict(entries["posterior"])
        for key, value in entries.get("posterior_diagnostics", {}).items():
            if key not in diagnostics:
                diagnostics[key] = value
            elif key == "r_hat_max":
                diagnostics[key] = max(diagnostics[key], value)
            elif key == "ess_min":
                diagnostics[key] = min(diagnostics[key], value)
            elif key in ("divergences", "fit_s"):
                diagnostics[key] = diagnostics[key] + value
    return {"posterior": posterior, "posterior_diagnostics": diagnostics}
