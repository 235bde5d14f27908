"""Scoring for the ddm_sim task: the candidate is a stochastic simulator of choices and reaction times, fitted to
each monkey's training trials by simulation-based inference (SMC-ABC, `engine.fit.fit_simulation_based`) and
scored by a posterior-predictive check on held-out trials.

Fit. The summary statistics of a data set are, at each of the 6 coherences, P(correct) and the 0.1, 0.3, 0.5, 0.7
and 0.9 quantiles of the correct-trial reaction times (36 numbers). SMC-ABC draws particles from the PARAMS box
(uniform prior), simulates FIT_TRIALS_PER_COHERENCE trials per coherence for each, and keeps shrinking the
tolerance on the (prior-predictive-scaled) distance to the training summaries. One fit per monkey.

Score (quantile-probability multinomial, Ratcliff & Tuerlinckx 2002 style). At each monkey and coherence the
reaction-time axis is cut at the 0.1/0.3/0.5/0.7/0.9 quantiles of that monkey's TRAINING reaction times (all
trials), giving 6 bins x 2 choices = 12 categories; the bins are fixed by the data, the same for every candidate.
The predictive probability of each category is estimated from PREDICTIVE_DRAWS posterior draws (resampled by
weight) x PREDICTIVE_TRIALS_PER_COHERENCE simulated trials each, with SMOOTHING pseudo-counts per category so
that it is never 0 (simulated trials with a non-finite RT count in the total but in no category).

score = mean log predictive probability of the held-out trials' categories (nats per trial), pooled over both
monkeys. Higher is better. The ceiling is minus the entropy of the held-out categories (about -2.2 nats when the
12 categories have the training proportions); a model that ignores RT and choice gets log(1/12) = -2.48.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from engine.fit import ParamSpec, fit_simulation_based
from engine.task.results import TaskResult

QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
FIT_TRIALS_PER_COHERENCE = 40
NUM_PARTICLES = 200
MAX_GENERATIONS = 4
MAX_SIMULATIONS = 3000
MIN_ACCEPTANCE_RATE = 0.1
PREDICTIVE_DRAWS = 100
PREDICTIVE_TRIALS_PER_COHERENCE = 50
SMOOTHING = 0.5
EMPTY_QUANTILE_S = 3.0  # the summary's RT quantile when a coherence has no correct trial at all
MONKEYS = ("B", "N")
Split = Mapping[str, np.ndarray]


def summary_statistics(data: Mapping[str, jax.Array], n_coherences: int) -> jax.Array:
    """Returns (n_coherences * 6,) summaries: per coherence P(correct), then correct-RT quantiles (s).

    Args:
        data: coherence_index (n,) int, correct (n,) 0/1 or bool, rt_s (n,) s, mask (n,) 1.0 = real trial.
    """
    correct = jnp.asarray(data["correct"]).astype(jnp.float32)
    rt_s = jnp.asarray(data["rt_s"]).astype(jnp.float32)
    mask = jnp.asarray(data["mask"]).astype(jnp.float32)
    quantiles = jnp.asarray(QUANTILES, jnp.float32)
    rows = []
    for j in range(n_coherences):
        at_level = mask * (jnp.asarray(data["coherence_index"]) == j).astype(jnp.float32)
        p_correct = jnp.sum(at_level * correct) / jnp.maximum(jnp.sum(at_level), 1.0)
        valid = (at_level * correct) > 0
        ordered = jnp.sort(jnp.where(valid, rt_s, jnp.inf))
        n_valid = jnp.sum(valid.astype(jnp.float32))
        position = quantiles * jnp.maximum(n_valid - 1.0, 0.0)
        low = jnp.floor(position).astype(jnp.int32)
        high = jnp.minimum(low + 1, jnp.maximum(n_valid - 1.0, 0.0).astype(jnp.int32))
        weight = position - low.astype(jnp.float32)
        values = (1.0 - weight) * ordered[low] + weight * ordered[high]
        values = jnp.where(n_valid > 0, values, jnp.float32(EMPTY_QUANTILE_S))
        rows.append(jnp.concatenate([p_correct[None], values]))
    return jnp.concatenate(rows)


def check_simulator(simulate: Callable, names: tuple[str, ...], n_trials: int) -> None:
    """Raises ValueError with one sentence when the simulator's outputs have the wrong shapes."""
    params = {name: jnp.float32(0.5) for name in names}
    coherence = jax.ShapeDtypeStruct((n_trials,), jnp.float32)
    outputs = jax.eval_shape(lambda c, k: simulate(params, c, k), coherence, jax.random.PRNGKey(0))
    if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
        raise ValueError(f"simulate returned {type(outputs).__name__}; expected a tuple (correct, rt_s).")
    for name, value in zip(("correct", "rt_s"), outputs):
        if getattr(value, "shape", None) != (n_trials,):
            raise ValueError(f"simulate returned {name} of shape {getattr(value, 'shape', None)}; "
                             f"expected ({n_trials},).")


def _design(levels: np.ndarray, trials_per_coherence: int) -> tuple[jax.Array, jax.Array]:
    """Returns the coherence (n,) and coherence index (n,) of a simulated data set, trials_per_coherence each."""
    index = np.repeat(np.arange(levels.shape[0], dtype=np.int32), trials_per_coherence)
    return jnp.asarray(levels[index], jnp.float32), jnp.asarray(index)


def _group(split: Split, g: int) -> dict[str, np.ndarray]:
    return {key: np.asarray(split[key][g]) for key in ("coherence_index", "correct", "rt_s", "mask")}


def _bin_edges(train: Mapping[str, np.ndarray], n_coherences: int) -> np.ndarray:
    """Returns (n_coherences, 5) RT bin edges, s: quantiles of the training RTs (both choices) per coherence."""
    edges = np.zeros((n_coherences, len(QUANTILES)))
    real = train["mask"] > 0
    for j in range(n_coherences):
        rt = train["rt_s"][real & (train["coherence_index"] == j)]
        edges[j] = np.quantile(rt, QUANTILES) if rt.size else np.quantile(train["rt_s"][real], QUANTILES)
    return edges


def _categories(edges: np.ndarray, coherence_index: np.ndarray, correct: np.ndarray, rt_s: np.ndarray) -> np.ndarray:
    """Returns each trial's category (n,): choice * 6 + RT bin, or -1 for a non-finite RT."""
    n_bins = edges.shape[1] + 1
    rt_bin = np.array([np.searchsorted(edges[j], rt, side="right") for j, rt in zip(coherence_index, rt_s)]) \
        if rt_s.size else np.zeros(0, int)
    category = np.asarray(correct, int) * n_bins + rt_bin
    return np.where(np.isfinite(rt_s), category, -1)


def _log_probabilities(edges, levels, simulate_draws) -> np.ndarray:
    """Returns (n_coherences, 12) smoothed log predictive probabilities of the categories."""
    coherence, index = _design(levels, PREDICTIVE_TRIALS_PER_COHERENCE)
    correct, rt_s = simulate_draws(coherence)  # (draws, n)
    correct = np.asarray(correct, bool).ravel()
    rt_s = np.asarray(rt_s, float).ravel()
    index = np.tile(np.asarray(index), PREDICTIVE_DRAWS)
    category = _categories(edges, index, correct, rt_s)
    n_categories = 2 * (edges.shape[1] + 1)
    log_p = np.zeros((levels.shape[0], n_categories))
    for j in range(levels.shape[0]):
        at_level = index == j
        counts = np.bincount(category[at_level & (category >= 0)], minlength=n_categories)
        log_p[j] = np.log((counts + SMOOTHING) / (at_level.sum() + SMOOTHING * n_categories))
    return log_p


def score(
    candidate: Callable,
    train: Split,
    heldout: Split,
    seed: int = 0,
    num_particles: int = NUM_PARTICLES,
    max_generations: int = MAX_GENERATIONS,
    max_simulations: int = MAX_SIMULATIONS,
) -> TaskResult:
    """Fits the candidate simulator to each monkey's training trials by SMC-ABC and scores held-out trials.

    Returns:
        score: mean held-out log predictive probability per trial of its (choice, RT-bin) category, nats,
            pooled over monkeys (see the module docstring). Higher is better.
        train_score: the same on the training trials.
        extra_scores: logprob_per_trial_<monkey>, the held-out score of each monkey, and
        abc_distance_<monkey>: SMC-ABC's posterior-predictive summary distance to the held-out summaries, in
            units of that candidate's own prior-predictive sd (diagnostic only: not comparable across candidates).
        scores_per_test: held-out score of each monkey and coherence, "B_coh0.128".
        fitted_params: one group per monkey, parameter name -> weighted posterior mean.
        timings: "compile_s", "fit_s" (SMC-ABC, both monkeys) and "score_s".
    """
    simulate = candidate
    spec = ParamSpec.from_bounds(candidate.PARAMS)
    levels = np.asarray(train["coherences"][0], np.float64)
    n_coherences = levels.shape[0]
    fit_coherence, fit_index = _design(levels, FIT_TRIALS_PER_COHERENCE)
    check_simulator(simulate, spec.names, int(fit_coherence.shape[0]))

    def simulate_data(params, key):
        correct, rt_s = simulate(params, fit_coherence, key)
        return {"coherence_index": fit_index, "correct": correct, "rt_s": rt_s,
                "mask": jnp.ones(fit_coherence.shape, jnp.float32)}

    def summary(data):
        return summary_statistics(data, n_coherences)

    n_groups = int(np.asarray(train["mask"]).shape[0])
    groups = MONKEYS[:n_groups]
    timings = {"compile_s": 0.0, "fit_s": 0.0, "score_s": 0.0}
    results, fitted, extra = [], {}, {}
    for g, monkey in enumerate(groups):
        result = fit_simulation_based(
            simulate_data, summary, spec, _group(train, g), held_out=_group(heldout, g),
            num_particles=num_particles, max_generations=max_generations, max_simulations=max_simulations,
            min_acceptance_rate=MIN_ACCEPTANCE_RATE, seed=seed + g)
        results.append(result)
        timings["compile_s"] += result.timings["compile_s"]
        timings["fit_s"] += result.timings["fit_s"]
        extra[f"abc_distance_{monkey}"] = result.posterior_predictive_distance
        fitted[monkey] = {name: float(result.mean()[name]) for name in spec.names}

    started = time.perf_counter()
    per_test: dict[str, float] = {}
    totals = {"heldout": [0.0, 0], "train": [0.0, 0]}
    for g, monkey in enumerate(groups):
        result = results[g]
        rng = np.random.default_rng(seed + 1000 + g)
        draws = rng.choice(result.weights.shape[0], size=PREDICTIVE_DRAWS, p=result.weights)
        draw_params = {name: jnp.asarray(values[draws], jnp.float32) for name, values in result.particles.items()}
        keys = jax.random.split(jax.random.PRNGKey(seed + 1000 + g), PREDICTIVE_DRAWS)

        def simulate_draws(coherence):
            return jax.jit(jax.vmap(lambda p, k: simulate(p, coherence, k)))(draw_params, keys)

        train_g, heldout_g = _group(train, g), _group(heldout, g)
        edges = _bin_edges(train_g, n_coherences)
        log_p = _log_probabilities(edges, levels, simulate_draws)
        for split_name, data in (("train", train_g), ("heldout", heldout_g)):
            real = data["mask"] > 0
            index = data["coherence_index"][real]
            category = _categories(edges, index, data["correct"][real], data["rt_s"][real].astype(float))
            log_prob = log_p[index, category]
            totals[split_name][0] += float(log_prob.sum())
            totals[split_name][1] += int(log_prob.size)
            if split_name == "heldout":
                extra[f"logprob_per_trial_{monkey}"] = float(log_prob.mean())
                for j, level in enumerate(levels):
                    if np.any(index == j):
                        per_test[f"{monkey}_coh{float(level):g}"] = float(log_prob[index == j].mean())
    timings["score_s"] = time.perf_counter() - started
    heldout_score = totals["heldout"][0] / max(totals["heldout"][1], 1)
    if not np.isfinite(heldout_score):
        raise ValueError("the fitted simulator gives a non-finite held-out score.")
    return TaskResult(
        score=float(heldout_score),
        train_score=float(totals["train"][0] / max(totals["train"][1], 1)),
        extra_scores=extra,
        scores_per_test=per_test,
        fitted_params=fitted,
        timings=timings,
    )
