"""Checks of a fitted simulator: parameter recovery by SMC-ABC and posterior-predictive figures.

Recovery: RECOVERY_SETS parameter sets are drawn around each monkey's posterior-mean parameters (normal steps of
RECOVERY_SPREAD in the unconstrained space), trials shaped like the training split (same coherence sequence) are
simulated from the candidate itself, the model is refitted to them by the same SMC-ABC as `score`, and generating
and recovered posterior means are correlated over all sets and monkeys.
Figures: the psychometric curve (P(correct) per coherence) and the RT quantiles of correct trials per coherence,
model (FIGURE_TRIALS_PER_COHERENCE trials simulated at the posterior mean) vs held-out data, per monkey.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from engine.fit import ParamSpec, combine_posteriors, fit_simulation_based, parameter_recovery
from engine.task.results import TaskVerification

from .score import (FIT_TRIALS_PER_COHERENCE, MAX_GENERATIONS, MAX_SIMULATIONS, MIN_ACCEPTANCE_RATE, MONKEYS,
                    NUM_PARTICLES, QUANTILES, _design, _group, score, summary_statistics)

RECOVERY_SETS = 3  # per monkey
RECOVERY_SPREAD = 0.4
FIGURE_TRIALS_PER_COHERENCE = 2000
Split = Mapping[str, np.ndarray]


def _as_jax(params: Mapping[str, float]) -> dict[str, jax.Array]:
    return {name: jnp.float32(value) for name, value in params.items()}


def _figures(simulate, fitted: list[dict[str, float]], heldout: Split, seed: int) -> list[dict[str, Any]]:
    figures = []
    for g, params in enumerate(fitted):
        monkey = MONKEYS[g]
        levels = np.asarray(heldout["coherences"][g], np.float64)
        coherence, index_model = _design(levels, FIGURE_TRIALS_PER_COHERENCE)
        correct_model, rt_model = simulate(_as_jax(params), coherence, jax.random.PRNGKey(seed + 2000 + g))
        correct_model, rt_model = np.asarray(correct_model, bool), np.asarray(rt_model, float)
        index_model = np.asarray(index_model)
        data = _group(heldout, g)
        real = data["mask"] > 0
        index, correct, rt = data["coherence_index"][real], data["correct"][real] == 1, data["rt_s"][real]
        present = [j for j in range(levels.size) if np.any(index == j)]
        x = [float(levels[j] * 100) for j in present]
        p_data = [float(correct[index == j].mean()) for j in present]
        n = [int(np.sum(index == j)) for j in present]
        figures.append({
            "title": f"Psychometric curve, monkey {monkey} (held-out trials)",
            "xlabel": "motion coherence (%)", "ylabel": "P(correct)",
            "series": [
                {"label": "data", "x": x, "y": p_data, "kind": "scatter", "role": "data",
                 "yerr": [float(np.sqrt(p * (1 - p) / max(k, 1))) for p, k in zip(p_data, n)]},
                {"label": "model", "x": x, "y": [float(correct_model[index_model == j].mean()) for j in present],
                 "kind": "line", "role": "model"},
            ],
        })
        series = []
        for q in QUANTILES:
            def quantile(rts):
                rts = rts[np.isfinite(rts)]
                return float(np.quantile(rts, q)) if rts.size else float("nan")
            series.append({"label": f"data q{q:.1f}", "x": x, "kind": "scatter", "role": "data",
                           "y": [quantile(rt[(index == j) & correct]) for j in present]})
            series.append({"label": f"model q{q:.1f}", "x": x, "kind": "line", "role": "model",
                           "y": [quantile(rt_model[(index_model == j) & correct_model]) for j in present]})
        figures.append({
            "title": f"RT quantiles of correct choices, monkey {monkey} (held-out trials)",
            "xlabel": "motion coherence (%)", "ylabel": "reaction time (s)", "series": series,
        })
    return figures


def verify(candidate: Callable, train: Split, heldout: Split, seed: int = 0, posterior: bool = False) -> TaskVerification:
    """Returns the held-out score, parameter recovery {name: pearson r} with its pairs, and figures; with
    `posterior` (`discover verify --posterior`) also each monkey's SMC-ABC posterior quantiles, fitted with the
    score's design, settings and seed."""
    simulate = candidate
    spec = ParamSpec.from_bounds(candidate.PARAMS)
    result = score(candidate, train, heldout, seed=seed)
    n_groups = int(np.asarray(train["mask"]).shape[0])
    fitted = [dict(result.fitted_params[MONKEYS[g]]) for g in range(n_groups)]
    levels = np.asarray(train["coherences"][0], np.float64)
    n_coherences = levels.shape[0]
    fit_coherence, fit_index = _design(levels, 40)

    def simulate_data(params, key):
        correct, rt_s = simulate(params, fit_coherence, key)
        return {"coherence_index": fit_index, "correct": correct, "rt_s": rt_s, "mask": jnp.ones_like(rt_s)}

    def simulate_row(params, row, rng):
        """Trials with the row's own coherence sequence, simulated by the candidate."""
        coherence = jnp.asarray(levels[row["coherence_index"]], jnp.float32)
        correct, rt_s = simulate(_as_jax(params), coherence, jax.random.PRNGKey(rng.integers(2**31)))
        return {**row, "correct": np.asarray(correct, np.int32), "rt_s": np.asarray(rt_s, np.float32)}

    def refit(stacked):
        """Each simulated row refitted on its own by the same SMC-ABC as `score`; the posterior means."""
        sets = []
        for k in range(len(stacked["correct"])):
            fit = fit_simulation_based(
                simulate_data, lambda d: summary_statistics(d, n_coherences), spec,
                {key: value[k] for key, value in stacked.items()}, num_particles=NUM_PARTICLES,
                max_generations=MAX_GENERATIONS, max_simulations=MAX_SIMULATIONS,
                min_acceptance_rate=MIN_ACCEPTANCE_RATE, seed=seed + k)
            sets.append(fit.mean())
        return sets

    rows = [_group(train, g) for g in range(n_groups)]
    recovery = parameter_recovery(spec, fitted, rows, simulate_row, refit, n_sets=RECOVERY_SETS * n_groups,
                                  spread=RECOVERY_SPREAD, seed=seed)
    posterior_record = {}
    if posterior:
        score_coherence, score_index = _design(levels, FIT_TRIALS_PER_COHERENCE)

        def simulate_like_score(params, key):
            correct, rt_s = simulate(params, score_coherence, key)
            return {"coherence_index": score_index, "correct": correct, "rt_s": rt_s,
                    "mask": jnp.ones(score_coherence.shape, jnp.float32)}

        by_monkey = {MONKEYS[g]: fit_simulation_based(
            simulate_like_score, lambda d: summary_statistics(d, n_coherences), spec, _group(train, g),
            num_particles=NUM_PARTICLES, max_generations=MAX_GENERATIONS, max_simulations=MAX_SIMULATIONS,
            min_acceptance_rate=MIN_ACCEPTANCE_RATE, seed=seed + g).posterior_record() for g in range(n_groups)}
        posterior_record = combine_posteriors(by_monkey)
    return TaskVerification(score=result.score, fitted_params=result.fitted_params, recovery=recovery,
                            figures=_figures(simulate, fitted, heldout, seed), posterior=posterior_record)
