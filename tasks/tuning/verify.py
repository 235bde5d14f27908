"""Verification of a fitted tuning model: parameter recovery and tuning curves with data.

`verify(candidate, train, heldout, seed)` runs in the trusted scoring worker (`candidate` is the exported
computation, not the candidate's Python) and returns plain data:

- score: the held-out log-likelihood per trial, exactly as `score.py:score` computes it (Poisson counts);
- recovery: K parameter sets are drawn around the fitted ones (set k perturbs neuron k mod n_neurons, Gaussian
  steps of sd RECOVERY_SD in the fitter's unconstrained space); each simulates Poisson counts at that neuron's
  training stimuli with the candidate, all K are refitted together (`engine.fit.fit_per_group`, the same
  likelihood and fitter as scoring), and recovery[name] is the Pearson r between generating and recovered values
  over the sets whose refit succeeded (recovery_failed_sets lists the others); for an angle (`angle_periods`: a
  parameter named *_deg and declared on (0, 360) or (0, 180), e.g. the seed's pref_deg) it is the circular
  correlation, and recovery_circular names those parameters;
- figures: for the first MAX_CURVE_NEURONS neurons, the direction tuning curve for single gratings at full
  contrast (data: mean count +/- s.e.m. over all repeats in train and heldout; model: the fitted function on a
  5-deg grid), and one scatter of observed vs predicted mean count per stimulus condition (held-out repeats).
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from engine.fit import ParamSpec, combine_posteriors, parameter_recovery, posterior_summary, refit_by_likelihood
from engine.task.results import TaskVerification

from .score import FIT_KEYS, MIN_RATE, check_tuning, score, trial_log_likelihoods

Split = Mapping[str, np.ndarray]
N_RECOVERY_SETS = 6
RECOVERY_SD = 0.3
MAX_CURVE_NEURONS = 3
GRID_STEP_DEG = 5.0
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def angle_periods(spec) -> dict[str, float]:
    """Returns {name: period in deg} for the parameters that are angles: named *_deg, declared on (0, 360) or (0, 180).

    A direction (0-360) or an orientation (0-180) wraps, so its recovery is judged on the circle.
    """
    return {
        name: high for name, low, high in zip(spec.names, spec.lows, spec.highs)
        if name.endswith("_deg") and low == 0.0 and high in (180.0, 360.0)
    }


def _per_neuron_params(fitted: Mapping[str, Mapping[str, float]], names: tuple[str, ...],
                       units: list[str]) -> dict[str, np.ndarray]:
    return {name: np.array([fitted[unit][name] for unit in units]) for name in names}


def _rates(tuning, params: Mapping[str, np.ndarray], direction: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """Expected counts of each neuron (row) at its own stimuli, (n_neurons, n_trials)."""
    batched = {name: jnp.asarray(value, jnp.float32) for name, value in params.items()}
    rate = jax.vmap(tuning)(batched, jnp.asarray(direction), jnp.asarray(contrast))
    return np.maximum(np.asarray(rate, dtype=float), MIN_RATE)


def single_grating_curve(split: Split, neuron: int) -> tuple[list[float], list[float], list[float]]:
    """Returns (direction, mean count, s.e.m.) of full-contrast single-grating trials of one neuron, by direction."""
    contrast = np.asarray(split["contrast"][neuron])
    shown = contrast > 0
    single = (shown.sum(axis=1) == 1) & (contrast.max(axis=1) > 0.99) & (np.asarray(split["mask"][neuron]) > 0)
    direction = np.asarray(split["direction_deg"][neuron])[single][np.arange(single.sum()), np.argmax(shown[single], axis=1)]
    counts = np.asarray(split["spike_count"][neuron])[single]
    xs, means, sems = [], [], []
    for value in np.unique(np.round(direction, 1)):
        selected = counts[np.round(direction, 1) == value]
        xs.append(float(value))
        means.append(float(selected.mean()))
        sems.append(float(selected.std(ddof=1) / np.sqrt(selected.size)) if selected.size > 1 else 0.0)
    return xs, means, sems


def condition_means(split: Split, rate: np.ndarray, neuron: int) -> tuple[list[float], list[float]]:
    """Returns (predicted, observed) mean count per stimulus condition of one neuron."""
    mask = np.asarray(split["mask"][neuron]) > 0
    condition = np.asarray(split["condition"][neuron])[mask]
    counts = np.asarray(split["spike_count"][neuron])[mask]
    predicted_rate = rate[neuron][mask]
    predicted, observed = [], []
    for value in np.unique(condition):
        selected = condition == value
        predicted.append(float(predicted_rate[selected].mean()))
        observed.append(float(counts[selected].mean()))
    return predicted, observed


def verify(candidate: Callable, train: Split, heldout: Split, seed: int = 0,
           n_sets: int = N_RECOVERY_SETS, restarts: int = 4, max_steps: int = 200,
           posterior: bool = False) -> TaskVerification:
    """Scores the candidate, checks parameter recovery around its per-neuron fits, and returns figures; with
    `posterior` (`discover verify --posterior`) also each neuron's NUTS posterior quantiles on its training trials."""
    tuning = candidate
    spec = ParamSpec.from_bounds(candidate.PARAMS)
    check_tuning(tuning, spec.names, train)
    scored = score(candidate, train, heldout, seed=seed)
    units = [str(unit) for unit in np.asarray(train["unit_names"])]
    fitted = _per_neuron_params(scored.fitted_params, spec.names, units)

    # parameter recovery: set k perturbs neuron k mod n_neurons and is simulated at that neuron's training stimuli
    rows = [{key: np.asarray(train[key][i]) for key in ("direction_deg", "contrast", "mask")} for i in range(len(units))]
    rate_of = jax.jit(tuning)

    def simulate(params, row, rng):
        rate = np.maximum(np.asarray(rate_of({name: jnp.float32(value) for name, value in params.items()},
                                             jnp.asarray(row["direction_deg"]), jnp.asarray(row["contrast"]))), MIN_RATE)
        return {**row, "spike_count": (rng.poisson(rate) * (row["mask"] > 0)).astype(np.float32)}

    def neg_log_likelihood(params, data):
        return -jnp.sum(trial_log_likelihoods(tuning, params, data, "poisson"))

    fitted_sets = [{name: float(fitted[name][i]) for name in spec.names} for i in range(len(units))]
    recovery = parameter_recovery(
        spec, fitted_sets, rows, simulate,
        refit_by_likelihood(neg_log_likelihood, spec, restarts=restarts, max_steps=max_steps, optimizer="lbfgs",
                            seed=seed + 1),
        n_sets=n_sets, spread=RECOVERY_SD, seed=seed, periods=angle_periods(spec))

    # tuning curves: single gratings at full contrast, data from every repeat, model on a direction grid
    both = {key: np.concatenate([np.asarray(train[key]), np.asarray(heldout[key])], axis=1)
            for key in ("direction_deg", "contrast", "spike_count", "mask")}
    grid = np.arange(0.0, 360.0, GRID_STEP_DEG)
    grid_direction = np.zeros((len(units), grid.size, train["direction_deg"].shape[-1]), np.float32)
    grid_direction[:, :, 0] = grid
    grid_contrast = np.zeros_like(grid_direction)
    grid_contrast[:, :, 0] = 1.0
    grid_rate = _rates(tuning, fitted, grid_direction, grid_contrast)
    figures = []
    for neuron in range(min(MAX_CURVE_NEURONS, len(units))):
        xs, means, sems = single_grating_curve(both, neuron)
        figures.append({
            "title": f"Direction tuning of {units[neuron]}: single gratings, full contrast",
            "xlabel": "drift direction (deg)",
            "ylabel": "spike count in 1 s",
            "series": [
                {"label": "data (mean +/- s.e.m.)", "x": xs, "y": means, "yerr": sems, "kind": "scatter", "role": "data"},
                {"label": "fitted model", "x": grid.tolist(), "y": grid_rate[neuron].tolist(), "kind": "line",
                 "role": "model"},
            ],
        })
    held_rate = _rates(tuning, fitted, np.asarray(heldout["direction_deg"]), np.asarray(heldout["contrast"]))
    scatter = []
    for neuron, unit in enumerate(units):
        predicted, observed = condition_means(heldout, held_rate, neuron)
        scatter.append({"label": unit, "x": predicted, "y": observed, "kind": "scatter", "role": "data",
                        "color": COLORS[neuron % len(COLORS)]})
    top = max(max(series["x"] + series["y"]) for series in scatter)
    scatter.append({"label": "observed = predicted", "x": [0.0, top], "y": [0.0, top], "kind": "line", "role": "model"})
    figures.append({
        "title": "Mean count per stimulus condition (held-out repeats)",
        "xlabel": "predicted spike count",
        "ylabel": "observed spike count",
        "series": scatter,
    })
    posterior_record = {}
    if posterior:
        by_unit = {unit: posterior_summary(neg_log_likelihood, spec,
                                           {key: jnp.asarray(train[key][i]) for key in FIT_KEYS}, seed=seed)
                   for i, unit in enumerate(units)}
        posterior_record = combine_posteriors(by_unit)
    return TaskVerification(score=scored.score, fitted_params=scored.fitted_params, recovery=recovery,
                            figures=figures, posterior=posterior_record)
