"""Checks of a fitted decision process: parameter recovery and posterior-predictive figures.

Recovery: RECOVERY_SETS parameter sets are drawn around each monkey's fitted parameters (normal steps of
RECOVERY_SPREAD in the unconstrained space), trials shaped like the training split are sampled from each set's
own first-passage distribution, the model is refitted to them, and generating and recovered values are
correlated over all sets and monkeys.
Figures: the psychometric curve (P(correct) per coherence) and the RT quantiles of correct trials per coherence,
model vs held-out data, per monkey.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax.numpy as jnp
import numpy as np

from engine.fit import ParamSpec, combine_posteriors, parameter_recovery, posterior_summary, refit_by_likelihood
from engine.task.results import TaskVerification

from .score import DT_S, MONKEYS, TIME_S, model_densities, score, trial_log_likelihoods

RECOVERY_SETS = 4  # per monkey
RECOVERY_SPREAD = 0.4
QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
POSTERIOR_WARMUP = POSTERIOR_DRAWS = 300  # NUTS steps per chain (2 chains), per monkey
Split = Mapping[str, np.ndarray]


def sample_trials(decision, params: Mapping[str, float], group: Split, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Samples a choice and RT for each trial of one monkey's row from the model's first-passage distribution."""
    upper, lower, nondecision_s = model_densities(
        decision, {k: jnp.float32(v) for k, v in params.items()}, jnp.asarray(group["coherences"]))
    mass = np.concatenate([np.asarray(upper), np.asarray(lower)], axis=1) * DT_S  # (n_coh, 2 n_time)
    mass = np.maximum(mass, 0.0)
    mass /= mass.sum(axis=1, keepdims=True)
    cumulative = np.cumsum(mass, axis=1)
    index = np.asarray(group["coherence_index"])
    draws = np.array([np.searchsorted(cumulative[j], u) for j, u in zip(index, rng.random(index.shape[0]))])
    draws = np.minimum(draws, mass.shape[1] - 1)
    n_time = TIME_S.shape[0]
    correct = (draws < n_time).astype(np.int32)
    bin_end = draws % n_time
    rt_s = (bin_end - rng.random(index.shape[0])) * DT_S + float(nondecision_s)
    return {**{k: np.asarray(v) for k, v in group.items()}, "correct": correct, "rt_s": rt_s.astype(np.float32)}


def _model_summary(decision, params, coherences):
    upper, lower, nondecision_s = model_densities(
        decision, {k: jnp.float32(v) for k, v in params.items()}, jnp.asarray(coherences))
    upper, lower = np.asarray(upper) * DT_S, np.asarray(lower) * DT_S
    p_correct = upper.sum(axis=1) / np.maximum(upper.sum(axis=1) + lower.sum(axis=1), 1e-12)
    cdf = np.cumsum(upper, axis=1) / np.maximum(upper.sum(axis=1, keepdims=True), 1e-12)
    bin_mid = TIME_S - 0.5 * DT_S
    quantiles = np.array([[np.interp(q, c, bin_mid) for q in QUANTILES] for c in cdf]) + float(nondecision_s)
    return p_correct, quantiles


def _figures(decision, fitted: list[dict[str, float]], heldout: Split) -> list[dict[str, Any]]:
    figures = []
    for g, params in enumerate(fitted):
        monkey = MONKEYS[g]
        coherences = np.asarray(heldout["coherences"][g])
        mask = np.asarray(heldout["mask"][g]) > 0
        index = np.asarray(heldout["coherence_index"][g])[mask]
        correct = np.asarray(heldout["correct"][g])[mask]
        rt = np.asarray(heldout["rt_s"][g])[mask]
        p_model, q_model = _model_summary(decision, params, coherences)
        present = [j for j in range(coherences.size) if np.any(index == j)]
        x = [float(coherences[j] * 100) for j in present]
        p_data = [float(correct[index == j].mean()) for j in present]
        n = [int(np.sum(index == j)) for j in present]
        yerr = [float(np.sqrt(p * (1 - p) / max(k, 1))) for p, k in zip(p_data, n)]
        figures.append({
            "title": f"Psychometric curve, monkey {monkey} (held-out trials)",
            "xlabel": "motion coherence (%)", "ylabel": "P(correct)",
            "series": [
                {"label": "data", "x": x, "y": p_data, "yerr": yerr, "kind": "scatter", "role": "data"},
                {"label": "model", "x": x, "y": [float(p_model[j]) for j in present], "kind": "line", "role": "model"},
            ],
        })
        series = []
        for qi, q in enumerate(QUANTILES):
            data_q = [float(np.quantile(rt[(index == j) & (correct == 1)], q)) if np.any((index == j) & (correct == 1))
                      else float("nan") for j in present]
            series.append({"label": f"data q{q:.1f}", "x": x, "y": data_q, "kind": "scatter", "role": "data"})
            series.append({"label": f"model q{q:.1f}", "x": x, "y": [float(q_model[j, qi]) for j in present],
                           "kind": "line", "role": "model"})
        figures.append({
            "title": f"RT quantiles of correct choices, monkey {monkey} (held-out trials)",
            "xlabel": "motion coherence (%)", "ylabel": "reaction time (s)", "series": series,
        })
    return figures


def verify(candidate: Callable, train: Split, heldout: Split, seed: int = 0, posterior: bool = False) -> TaskVerification:
    """Returns the held-out score, parameter recovery {name: pearson r} with its pairs, and figures; with
    `posterior` (`discover verify --posterior`) also each monkey's NUTS posterior quantiles on its training trials
    (about 2 minutes per monkey on 2 cores with the full data)."""
    decision = candidate
    spec = ParamSpec.from_bounds(candidate.PARAMS)
    result = score(candidate, train, heldout, seed=seed)
    n_groups = np.asarray(train["mask"]).shape[0]
    fitted = [dict(result.fitted_params[MONKEYS[g]]) for g in range(n_groups)]

    rows = [{key: value[g] for key, value in train.items()} for g in range(n_groups)]

    def neg_log_likelihood(params, group):
        return -jnp.sum(trial_log_likelihoods(decision, params, group))

    recovery = parameter_recovery(
        spec, fitted, rows, lambda params, row, rng: sample_trials(decision, params, row, rng),
        refit_by_likelihood(neg_log_likelihood, spec, restarts=4, max_steps=40, optimizer="lbfgs", seed=seed),
        n_sets=RECOVERY_SETS * n_groups, spread=RECOVERY_SPREAD, seed=seed)
    posterior_record = {}
    if posterior:
        by_monkey = {MONKEYS[g]: posterior_summary(neg_log_likelihood, spec, {k: jnp.asarray(v) for k, v in rows[g].items()},
                                                   num_warmup=POSTERIOR_WARMUP, num_samples=POSTERIOR_DRAWS, seed=seed)
                     for g in range(n_groups)}
        posterior_record = combine_posteriors(by_monkey)
    return TaskVerification(score=result.score, fitted_params=result.fitted_params, recovery=recovery,
                            figures=_figures(decision, fitted, heldout), posterior=posterior_record)
