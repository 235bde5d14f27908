"""Fit on the training blocks by maximum likelihood, score held-out blocks: log-likelihood per trial (nats)."""

import jax.numpy as jnp

from engine.fit import ParamSpec, fit_maximum_likelihood
from engine.task.results import TaskResult, pooled_params


def log_likelihood(candidate, params, data):
    """Returns the Bernoulli log-likelihood (nats) of the choices in `data` under the candidate at `params`."""
    p_right = candidate(params, data["strength"])
    if p_right.shape != data["choice"].shape:
        raise ValueError(f"psychometric returned shape {p_right.shape}; expected {data['choice'].shape}.")
    p_right = jnp.clip(p_right, 1e-6, 1 - 1e-6)
    return jnp.sum(data["choice"] * jnp.log(p_right) + (1 - data["choice"]) * jnp.log1p(-p_right))


def score(candidate, train, heldout, seed=0, restarts=8, max_steps=200):
    spec = ParamSpec.from_bounds(candidate.PARAMS)
    result = fit_maximum_likelihood(lambda p, d: -log_likelihood(candidate, p, d), spec, train, restarts=restarts,
                                    max_steps=max_steps, seed=seed)
    fitted = {name: jnp.float32(value) for name, value in result.params.items()}
    return TaskResult(
        score=float(log_likelihood(candidate, fitted, heldout)) / len(heldout["choice"]),
        train_score=-result.neg_log_likelihood / len(train["choice"]),
        fitted_params=pooled_params(result.params),  # {group: {name: value}}; one group for a pooled fit
        timings=dict(result.timings),
    )
