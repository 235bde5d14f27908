"""Scoring for the ddm task: fit the candidate decision process to each monkey's training trials by maximum
likelihood, then score the joint choice / reaction-time likelihood of held-out trials.

Likelihood of one trial (choice c, reaction time rt at coherence level j):
    p = (1 - LAPSE) * g_c,j(rt - nondecision_s) + LAPSE * 0.5 / LAPSE_SPAN_S
where g_c,j is the first-passage density at bound c (first_passage.py: Fokker-Planck on a DT_S grid, linear
interpolation between grid times) and the LAPSE term is a fixed 2 % of responses spread uniformly over 0-2.5 s
and both choices, so a single stray trial cannot dominate the score.

score = mean held-out log-likelihood per trial, in nats (RT density per second), pooled over both monkeys.
Higher is better. Each monkey gets its own parameters (fit_per_group).
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from engine.fit import ParamSpec, fit_per_group, pad_to
from engine.task.results import TaskResult, grouped_params

from .first_passage import first_passage_densities

DT_S = 0.005
MAX_DECISION_S = 2.0
TIME_S = np.arange(int(round(MAX_DECISION_S / DT_S)) + 1, dtype=np.float32) * np.float32(DT_S)
LAPSE = 0.02
LAPSE_SPAN_S = 2.5
MONKEYS = ("B", "N")
Split = Mapping[str, np.ndarray]


def check_decision(decision: Callable, names: tuple[str, ...], n_coherences: int) -> None:
    """Raises ValueError with one sentence when the decision function's outputs have the wrong shapes."""
    params = {name: jnp.float32(0.5) for name in names}
    coherence = jax.ShapeDtypeStruct((n_coherences,), jnp.float32)
    time_s = jax.ShapeDtypeStruct(TIME_S.shape, jnp.float32)
    outputs = jax.eval_shape(lambda c, t: decision(params, c, t), coherence, time_s)
    if not isinstance(outputs, (tuple, list)) or len(outputs) != 3:
        raise ValueError(f"decision returned {type(outputs).__name__}; expected (drift, bound, nondecision_s).")
    expected = (n_coherences, TIME_S.shape[0])
    for name, value in zip(("drift", "bound"), outputs[:2]):
        if getattr(value, "shape", None) != expected:
            raise ValueError(f"decision returned {name} of shape {getattr(value, 'shape', None)}; expected {expected}.")
    if getattr(outputs[2], "shape", None) != ():
        raise ValueError(f"decision returned nondecision_s of shape {getattr(outputs[2], 'shape', None)}; expected ().")


def model_densities(decision: Callable, params: Mapping[str, jax.Array], coherences: jax.Array):
    """Returns upper, lower first-passage densities (n_coherences, n_time) in 1/s and nondecision_s."""
    drift, bound, nondecision_s = decision(params, coherences, jnp.asarray(TIME_S))
    bound = jnp.maximum(bound, 1e-3)
    upper, lower = first_passage_densities(drift.astype(jnp.float32), bound.astype(jnp.float32), DT_S)
    return upper, lower, nondecision_s


def trial_log_likelihoods(decision: Callable, params: Mapping[str, jax.Array], group: Split) -> jax.Array:
    """Returns the log-likelihood of each trial of one monkey, (n_trials,), zero at padding."""
    upper, lower, nondecision_s = model_densities(decision, params, group["coherences"])
    n_time = TIME_S.shape[0]
    # densities of both bounds, flattened: (error, correct) x coherence x time
    table = jnp.concatenate([lower.reshape(-1), upper.reshape(-1)])
    row = (group["correct"] * upper.shape[0] + group["coherence_index"]) * n_time  # (n_trials,)
    # density entry n averages the step ending at n * dt: place it at the step's middle
    position = (group["rt_s"] - nondecision_s) / DT_S + 0.5
    inside = (position > 0.0) & (position < n_time - 1)
    low = jnp.clip(jnp.floor(position), 0, n_time - 2).astype(jnp.int32)
    weight = jnp.clip(position - low, 0.0, 1.0)
    density = (1.0 - weight) * table[row + low] + weight * table[row + low + 1]
    density = jnp.where(inside, jnp.maximum(density, 0.0), 0.0)
    p = (1.0 - LAPSE) * density + LAPSE * 0.5 / LAPSE_SPAN_S
    return jnp.log(p) * group["mask"]


def score(
    candidate: Callable,
    train: Split,
    heldout: Split,
    seed: int = 0,
    restarts: int = 4,
    max_steps: int = 40,
) -> TaskResult:
    """Fits the candidate's PARAMS to each monkey's training trials and scores held-out trials.

    Returns:
        score: held-out log-likelihood per trial (nats; RT density per s), pooled over monkeys.
        train_score: the same on the training trials.
        extra_scores: train_log_likelihood and n_train_observations, the fitted log-likelihood (nats) of the
            training trials and their number (for AIC and BIC); loglik_per_trial_<monkey>, the held-out
            log-likelihood per trial of each monkey.
        scores_per_test: held-out log-likelihood per trial of each monkey and coherence, "B_coh0.128".
        fitted_params: one group per monkey, parameter name -> fitted value.
        timings: "compile_s", "fit_s" (from the fitter) and "score_s".
    """
    decision = candidate
    spec = ParamSpec.from_bounds(candidate.PARAMS)
    n_coherences = int(np.asarray(train["coherences"]).shape[1])
    check_decision(decision, spec.names, n_coherences)

    result = fit_per_group(None, spec, dict(train), held_out=pad_to(dict(heldout), dict(train)),
                           log_likelihood_terms=lambda params, group: trial_log_likelihoods(decision, params, group),
                           restarts=restarts, max_steps=max_steps, optimizer="lbfgs", seed=seed)
    started = time.perf_counter()
    n_groups = len(result.neg_log_likelihood)
    groups = MONKEYS[:n_groups]
    per_test: dict[str, float] = {}
    heldout_total, heldout_trials, per_monkey = 0.0, 0.0, {}
    for g, monkey in enumerate(groups):
        mask = np.asarray(heldout["mask"][g]) > 0
        ll = np.asarray(result.held_out_terms[g], dtype=float)[:len(mask)]
        heldout_total += ll[mask].sum()
        heldout_trials += mask.sum()
        per_monkey[monkey] = float(ll[mask].mean())
        for j, level in enumerate(np.asarray(heldout["coherences"][g])):
            rows = mask & (np.asarray(heldout["coherence_index"][g]) == j)
            if rows.any():
                per_test[f"{monkey}_coh{float(level):g}"] = float(ll[rows].mean())
    heldout_score = heldout_total / max(heldout_trials, 1.0)
    if not np.isfinite(heldout_score):
        raise ValueError("the fitted decision process gives a non-finite held-out likelihood.")
    n_train = float(np.asarray(train["mask"]).sum())
    return TaskResult(
        score=float(heldout_score),
        train_score=float(-result.neg_log_likelihood.sum() / n_train),
        extra_scores={"train_log_likelihood": float(-result.neg_log_likelihood.sum()), "n_train_observations": n_train,
                      **{f"loglik_per_trial_{monkey}": value for monkey, value in per_monkey.items()}},
        scores_per_test=per_test,
        fitted_params=grouped_params(result.params, groups),
        timings={**result.timings, "score_s": time.perf_counter() - started},
    )
