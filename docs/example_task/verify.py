"""Checks of a fitted psychometric function: parameter recovery, and the curve against held-out choices."""

import jax.numpy as jnp
import numpy as np

from engine.fit import ParamSpec, parameter_recovery, posterior_summary, refit_by_likelihood
from engine.task.results import TaskVerification

from .score import log_likelihood, score


def verify(candidate, train, heldout, seed=0, posterior=False):
    spec = ParamSpec.from_bounds(candidate.PARAMS)
    result = score(candidate, train, heldout, seed=seed)
    fitted = list(result.fitted_params.values())  # one entry per group; here one group

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
    posterior_record = {}
    if posterior:  # discover verify --posterior: NUTS on the training data, uniform prior on the bounds
        posterior_record = posterior_summary(lambda p, d: -log_likelihood(candidate, p, d), spec, train, seed=seed)
    return TaskVerification(score=result.score, fitted_params=result.fitted_params, recovery=recovery,
                            figures=[curve], posterior=posterior_record)
