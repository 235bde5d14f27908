"""Fit on the training blocks by maximum likelihood, score held-out blocks: log-likelihood per trial (nats)."""

import jax.numpy as jnp
import numpy as np

from engine.fit import ParamSpec, fit_maximum_likelihood


def score(candidate, train, heldout, seed=0):
    spec = ParamSpec.from_bounds(candidate.PARAMS)

    def log_likelihood(params, data):
        p_right = candidate(params, data["strength"])
        if p_right.shape != data["choice"].shape:
            raise ValueError(f"psychometric returned shape {p_right.shape}; expected {data['choice'].shape}.")
        p_right = jnp.clip(p_right, 1e-6, 1 - 1e-6)
        return jnp.sum(data["choice"] * jnp.log(p_right) + (1 - data["choice"]) * jnp.log1p(-p_right))

    result = fit_maximum_likelihood(lambda p, d: -log_likelihood(p, d), spec, train, restarts=8, max_steps=200, seed=seed)
    fitted = {name: jnp.float32(value) for name, value in result.params.items()}
    heldout_ll = float(log_likelihood(fitted, heldout)) / len(heldout["choice"])
    return {
        "score": heldout_ll,
        "train_score": -result.neg_log_likelihood / len(train["choice"]),
        "fitted_params": dict(result.params),
        "timings": dict(result.timings),
    }
