"""Checks of a fitted psychometric function: parameter recovery, and the curve against held-out choices."""

import jax.numpy as jnp
import numpy as np

from engine.fit import ParamSpec, parameter_recovery, posterior_summary, refit_by_likelihood

from .score import log_likelihood, score


def verify(candidate, train, heldout, seed=0, posterior=False):
    spec = ParamSpec.from_bounds(candidate.PARAMS)
    result = score(candidate, train, heldout, seed=seed)
    fitted = [{name: result["fitted_params"][name] for name in spec.names}]  # one entry per group; here one group

    def p_right(params, strength):
        return np.asarray(candidate({k: jnp.float32(v) for k, v in params.items()}, jnp.asarray(strength, jnp.float32)))

    def simulate(params, row, rng):  # one data set like `row`, drawn from the model at `params`
        return {**row, "choice": (rng.random(row["strength"].shape) < p_right(params, row["strength"])).astype(np.float32)}

    recovery = parameter_recovery(
        spec, fitted, [dict(train)], simulate,
        refit_by_likelihood(lambda p, d: -log_likelihood(candidate, p, d), spec, restarts=4, max_steps=200,
                            seed=seed + 1),
        n_sets=8, spread=0.4, seed=seed)

    strengths = np.unique(heldout["strength"])
    observed = [float(heldout["choice"][heldout["strength"] == s].mean()) for s in strengths]
    grid = np.linspace(strengths.min(), strengths.max(), 101)
    curve = {
        "title": "Psychometric curve (held-out blocks)", "xlabel": "stimulus strength (%)", "ylabel": "P(right)",
        "series": [
            {"label": "data", "x": strengths.tolist(), "y": observed, "kind": "scatter", "role": "data"},
            {"label": "fitted model", "x": grid.tolist(), "y": p_right(fitted[0], grid).tolist(), "kind": "line",
             "role": "model"},
        ],
    }
    returned = {"score": result["score"], **recovery.record(), "figures": [curve]}
    if posterior:  # discover verify --posterior: NUTS on the training data, uniform prior on the bounds
        returned.update(posterior_summary(lambda p, d: -log_likelihood(candidate, p, d), spec, train, seed=seed))
    return returned
