"""Scoring for the tuning task: fit the candidate tuning function to each neuron's training trials, score held-out trials.

Each neuron gets its own parameter values (`engine.fit.fit_per_group`: neurons and random restarts run batched in
one compiled program). The counts are scored with the noise model of the scoring entry:

- `score`: Poisson, spike_count ~ Poisson(rate);
- `score_negative_binomial`: negative binomial with mean `rate` and a per-neuron shape r (variance
  rate + rate^2 / r), fitted by the engine alongside the candidate's parameters (the candidate never sees it).

score = held-out log-likelihood per trial (nats, the log(k!) term included), pooled over neurons:
sum over neurons and held-out trials of log p(count | fitted model) / number of held-out trials. Higher is better.
As diagnostics, `bits_per_spike` is the held-out information gain over a per-neuron constant rate (the mean
training count), in bits per held-out spike, and scores_per_test holds each neuron's log-likelihood per trial.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from engine.fit import ParamSpec, fit_per_group, pad_to
from engine.task.results import TaskResult, grouped_params

Split = Mapping[str, np.ndarray]
FIT_KEYS = ("direction_deg", "contrast", "spike_count", "mask")
MIN_RATE = 1e-6  # expected counts are floored here so that log(rate) stays finite
SHAPE_PARAM = "noise_log_shape"  # log of the negative binomial shape r, fitted per neuron by the engine
SHAPE_BOUNDS = (-3.0, 8.0)


def poisson_log_pmf(count: jax.Array, rate: jax.Array) -> jax.Array:
    """log P(count | Poisson(rate)), elementwise (nats)."""
    return count * jnp.log(rate) - rate - gammaln(count + 1.0)


def negative_binomial_log_pmf(count: jax.Array, rate: jax.Array, log_shape: jax.Array) -> jax.Array:
    """log P(count) for a negative binomial with mean `rate` and shape r = exp(log_shape), elementwise (nats)."""
    shape = jnp.exp(log_shape)
    return (
        gammaln(count + shape) - gammaln(shape) - gammaln(count + 1.0)
        + shape * (log_shape - jnp.log(shape + rate)) + count * (jnp.log(rate) - jnp.log(shape + rate))
    )


def check_tuning(tuning: Callable, names: tuple[str, ...], split: Split) -> None:
    """Raises ValueError with one sentence when the tuning function returns the wrong shape."""
    params = {name: jnp.float32(0.5) for name in names}
    direction, contrast = jnp.asarray(split["direction_deg"][0]), jnp.asarray(split["contrast"][0])
    rate = jax.eval_shape(tuning, params, direction, contrast)
    expected = (direction.shape[0],)
    if getattr(rate, "shape", None) != expected:
        raise ValueError(f"tuning returned rate of shape {getattr(rate, 'shape', type(rate))}; expected {expected}.")


def trial_log_likelihoods(tuning: Callable, params: Mapping[str, jax.Array], data: Mapping[str, jax.Array],
                          noise: str) -> jax.Array:
    """Returns log p(count) of each trial of one neuron, (n_trials,), zero on padding."""
    rate = jnp.maximum(tuning(params, data["direction_deg"], data["contrast"]), MIN_RATE)
    if noise == "poisson":
        log_p = poisson_log_pmf(data["spike_count"], rate)
    else:
        log_p = negative_binomial_log_pmf(data["spike_count"], rate, params[SHAPE_PARAM])
    return jnp.where(data["mask"] > 0, log_p, 0.0)


def fit_spec(declared_bounds: Mapping[str, tuple[float, float]], noise: str) -> tuple[ParamSpec, ParamSpec]:
    """Returns (the candidate's declared parameters, those plus the noise model's own parameters)."""
    declared = ParamSpec.from_bounds(declared_bounds)
    if noise == "poisson":
        return declared, declared
    if SHAPE_PARAM in declared.names:
        raise ValueError(f"tuning declares a parameter named {SHAPE_PARAM!r}, which the noise model uses; rename it.")
    bounds = {name: (low, high) for name, low, high in zip(declared.names, declared.lows, declared.highs)}
    return declared, ParamSpec.from_bounds({**bounds, SHAPE_PARAM: SHAPE_BOUNDS})


def fit_neurons(candidate: Callable, train: Split, heldout: Split | None, *, noise: str = "poisson",
                seed: int = 0, restarts: int = 16, max_steps: int = 200):
    """Fits the candidate to each neuron of `train`; returns (GroupFitResult, ParamSpec of the fit).

    `heldout` (same neurons, any number of trials) is scored at each neuron's fitted parameters in the same
    compiled program; pass None to skip it.
    """
    tuning = candidate
    declared, spec = fit_spec(candidate.PARAMS, noise)
    check_tuning(tuning, declared.names, train)

    def neg_log_likelihood(params, data):
        return -jnp.sum(trial_log_likelihoods(tuning, params, data, noise))

    fit_data = {key: np.asarray(train[key]) for key in FIT_KEYS}
    held = None if heldout is None else pad_to({key: np.asarray(heldout[key]) for key in FIT_KEYS}, fit_data)
    result = fit_per_group(neg_log_likelihood, spec, fit_data, held_out=held, restarts=restarts,
                           max_steps=max_steps, optimizer="lbfgs", seed=seed)
    return result, spec


def constant_rate_log_likelihood(train: Split, heldout: Split) -> np.ndarray:
    """Held-out Poisson log-likelihood (nats) of each neuron under its mean training count, (n_neurons,)."""
    mean = np.sum(train["spike_count"] * train["mask"], axis=1) / np.sum(train["mask"], axis=1)
    rate = np.maximum(mean, MIN_RATE)[:, None].astype(np.float32)
    log_p = np.asarray(poisson_log_pmf(jnp.asarray(heldout["spike_count"]), jnp.asarray(rate)))
    return np.sum(log_p * heldout["mask"], axis=1)


def _score(candidate: Callable, train: Split, heldout: Split, seed: int, noise: str,
           restarts: int, max_steps: int) -> TaskResult:
    result, spec = fit_neurons(candidate, train, heldout, noise=noise, seed=seed, restarts=restarts,
                               max_steps=max_steps)
    started = time.perf_counter()
    held_ll = -np.asarray(result.held_out_neg_log_likelihood, dtype=float)
    if not np.all(np.isfinite(held_ll)):
        raise ValueError("the fitted tuning function gives a non-finite held-out likelihood.")
    held_trials = np.sum(heldout["mask"], axis=1)
    train_trials = np.sum(train["mask"], axis=1)
    held_spikes = float(np.sum(heldout["spike_count"] * heldout["mask"]))
    null_ll = constant_rate_log_likelihood(train, heldout)
    names = [str(name) for name in np.asarray(train["unit_names"])]
    return TaskResult(
        score=float(held_ll.sum() / held_trials.sum()),
        train_score=float(-np.sum(result.neg_log_likelihood) / train_trials.sum()),
        extra_scores={
            "train_log_likelihood": float(-np.sum(result.neg_log_likelihood)),
            "n_train_observations": float(train_trials.sum()),
            "bits_per_spike": float((held_ll.sum() - null_ll.sum()) / (max(held_spikes, 1.0) * math.log(2.0))),
        },
        scores_per_test={unit: float(ll / n) for unit, ll, n in zip(names, held_ll, held_trials)},
        fitted_params=grouped_params(result.params, names),
        timings={**result.timings, "score_s": time.perf_counter() - started},
    )


def score(candidate: Callable, train: Split, heldout: Split, seed: int = 0, restarts: int = 16,
          max_steps: int = 200) -> TaskResult:
    """Fits the candidate's PARAMS per neuron on `train` (Poisson counts) and scores `heldout`.

    Returns:
        score: held-out log-likelihood per trial (nats), pooled over neurons; higher is better.
        train_score: the same on the training trials.
        extra_scores: train_log_likelihood and n_train_observations, the fitted log-likelihood (nats) of the
            training trials and their number (for AIC and BIC); bits_per_spike, the held-out information gain
            over a constant rate per neuron, bits per spike.
        scores_per_test: unit id -> held-out log-likelihood per trial of that neuron.
        fitted_params: one group per unit id, parameter name -> fitted value.
        timings: seconds for "compile_s" and "fit_s" (from the fitter) and "score_s".
    """
    return _score(candidate, train, heldout, seed, "poisson", restarts, max_steps)


def score_negative_binomial(candidate: Callable, train: Split, heldout: Split, seed: int = 0,
                            restarts: int = 16, max_steps: int = 200) -> TaskResult:
    """As `score`, with negative binomial counts whose per-neuron shape (noise_log_shape) the engine fits."""
    return _score(candidate, train, heldout, seed, "negative_binomial", restarts, max_steps)
