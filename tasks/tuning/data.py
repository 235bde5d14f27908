"""Data for the tuning task: spike counts of macaque V1 neurons to drifting gratings and grating mixtures.

Real data: the "tp" experiment of Goris, Simoncelli & Movshon (2015), loaded through the dataset registry
(`tasks.data.load_goris2015`). Each stimulus is a sum of up to 9 drifting gratings (components) of different
directions and contrasts, shown for 1 s; each of 176 stimulus conditions (16 of them blank) is repeated 10 times.
Synthetic twin: counts simulated at the same stimuli from a known tuned-normalization model (GROUND_TRUTH).

Every split holds one row per neuron, trials padded to a common length (use `mask`):
    direction_deg: (n_neurons, n_trials, 9) float32 drift direction of each component, deg in [0, 360)
    contrast:      (n_neurons, n_trials, 9) float32 Michelson contrast of each component, 0-1; 0 = absent
    spike_count:   (n_neurons, n_trials) float32 spikes in the 1-s stimulus window (latency-corrected)
    mask:          (n_neurons, n_trials) float32, 1.0 for real trials, 0.0 for padding
    condition:     (n_neurons, n_trials) int32 stimulus-condition id (equal ids = identical stimuli)
    unit_names:    (n_neurons,) str, the upstream unit ids

Held-out trials are split by stimulus-repeat interleaving within each neuron: the k-th presentation of each
condition (k = 0..9, in trial order) goes to train when k % 5 < 3, to selection when k % 5 == 3 and to test when
k % 5 == 4, so every split sees every stimulus (6 / 2 / 2 repeats).
"""

from __future__ import annotations

import numpy as np

N_COMPONENTS = 9
V1_UNITS = ("m620r35", "m624l54", "m625r58", "m625r62", "m627r58")

# The synthetic ground truth: tuned normalization (baselines/tuned_normalization.py), one parameter set per
# neuron, rounded from a Poisson fit of that model to each V1 unit's real training trials and moved off the
# bounds where the fit ended at one (m625r62 fires 0.3 spikes/trial, so its fit is weakly constrained).
_NAMES = ("pref_deg", "kappa", "null_ratio", "pool_tuned", "pool_kappa", "sigma", "exponent", "gain", "baseline")
GROUND_TRUTH: dict[str, dict[str, float]] = {
    unit: dict(zip(_NAMES, values))
    for unit, values in {
        "m620r35": (227.0, 7.0, 0.07, 0.7, 2.0, 0.10, 1.4, 145.0, 9.3),
        "m624l54": (218.0, 1.1, 0.9, 0.3, 3.0, 0.35, 2.5, 36.0, 5.0),
        "m625r58": (305.0, 8.0, 0.95, 0.8, 1.0, 0.40, 2.5, 22.0, 0.3),
        "m625r62": (305.0, 8.0, 0.5, 0.5, 2.0, 0.50, 2.0, 5.0, 0.1),
        "m627r58": (127.0, 6.0, 0.95, 0.9, 0.9, 0.30, 3.0, 90.0, 5.0),
    }.items()
}


def tuned_normalization_numpy(params: dict[str, float], direction_deg: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """The generating model in numpy; the same arithmetic as baselines/tuned_normalization.py's JAX function.

    Returns the expected spike count per trial, shape (n_trials,).
    """
    delta = np.deg2rad(direction_deg - params["pref_deg"])
    drive_tuning = np.exp(params["kappa"] * (np.cos(delta) - 1.0)) + params["null_ratio"] * np.exp(
        params["kappa"] * (-np.cos(delta) - 1.0)
    )
    pool_tuning = (1.0 - params["pool_tuned"]) + params["pool_tuned"] * np.exp(
        params["pool_kappa"] * (np.cos(2.0 * delta) - 1.0)
    )
    drive = np.sum(contrast * drive_tuning, axis=-1)
    pool = np.sum(contrast * pool_tuning, axis=-1)
    n = params["exponent"]
    drive_n = np.exp(n * np.log(drive + 1e-6))
    pool_n = np.exp(n * np.log(pool + 1e-6))
    return params["baseline"] + params["gain"] * drive_n / (params["sigma"] ** n + pool_n)


def _per_unit_rows(trials, unit_index: int) -> dict[str, np.ndarray]:
    rows = np.flatnonzero(trials.unit == unit_index)
    rows = rows[np.argsort(trials.trial_number[rows], kind="stable")]
    contrast = np.nan_to_num(trials.contrast[rows], nan=0.0)
    direction = np.where(contrast > 0, np.nan_to_num(trials.direction_deg[rows], nan=0.0), 0.0) % 360.0
    condition = trials.block_id[rows]
    # repeat index: how many earlier trials showed the same condition
    repeat = np.zeros(rows.size, np.int64)
    seen: dict[int, int] = {}
    for i, block in enumerate(condition.tolist()):
        repeat[i] = seen.get(block, 0)
        seen[block] = repeat[i] + 1
    return {
        "direction_deg": direction.astype(np.float32),
        "contrast": contrast.astype(np.float32),
        "spike_count": trials.spike_count[rows].astype(np.float32),
        "condition": condition.astype(np.int32),
        "repeat": repeat,
    }


def _pad(units: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    n_max = max(unit["spike_count"].size for unit in units)
    out = {
        "direction_deg": np.zeros((len(units), n_max, N_COMPONENTS), np.float32),
        "contrast": np.zeros((len(units), n_max, N_COMPONENTS), np.float32),
        "spike_count": np.zeros((len(units), n_max), np.float32),
        "mask": np.zeros((len(units), n_max), np.float32),
        "condition": np.full((len(units), n_max), -1, np.int32),
    }
    for i, unit in enumerate(units):
        n = unit["spike_count"].size
        for key in ("direction_deg", "contrast", "spike_count", "condition"):
            out[key][i, :n] = unit[key]
        out["mask"][i, :n] = 1.0
    out["unit_names"] = np.array(names)
    return out


def simulate_counts(units: list[dict[str, np.ndarray]], names: list[str], seed: int) -> None:
    """Replaces each unit's spike counts by Poisson draws from GROUND_TRUTH at the same stimuli (in place)."""
    rng = np.random.default_rng(seed)
    for unit, name in zip(units, names):
        rate = tuned_normalization_numpy(GROUND_TRUTH[name], unit["direction_deg"], unit["contrast"])
        unit["spike_count"] = rng.poisson(rate).astype(np.float32)


def load(source: str = "real", units: tuple[str, ...] | list[str] = V1_UNITS, seed: int = 0,
         subset: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Returns {"train", "selection", "test"} splits, each with one padded row per neuron.

    Args:
        source: "real" (the recorded counts) or "synthetic" (Poisson counts from GROUND_TRUTH at the same stimuli,
            deterministic given `seed`).
        units: upstream unit ids to include; default the five V1 units (m620r12, the V2 unit, is left out).
        seed: seed of the synthetic counts (the split itself is fixed by the repeat interleaving).
        subset: keep only the first `subset` units (small CI runs).
    """
    from tasks.data import load_goris2015

    if source not in ("real", "synthetic"):
        raise ValueError(f"data source '{source}' is unknown; expected 'real' or 'synthetic'.")
    names = list(units)[: subset if subset is not None else None]
    if not names:
        raise ValueError("no units selected; pass at least one unit id, e.g. units: [m620r35].")
    trials = load_goris2015("tp")
    unknown = [name for name in names if name not in trials.unit_names]
    if unknown:
        raise ValueError(f"units {unknown} are not in the Goris (2015) data; known: {list(trials.unit_names)}.")
    per_unit = [_per_unit_rows(trials, trials.unit_names.index(name)) for name in names]
    if source == "synthetic":
        missing = [name for name in names if name not in GROUND_TRUTH]
        if missing:
            raise ValueError(f"no ground-truth parameters for units {missing}; synthetic data exist for {list(GROUND_TRUTH)}.")
        simulate_counts(per_unit, names, seed)
    splits = {}
    for split, keep in (("train", lambda k: k % 5 < 3), ("selection", lambda k: k % 5 == 3), ("test", lambda k: k % 5 == 4)):
        chosen = [{key: value[keep(unit["repeat"])] for key, value in unit.items() if key != "repeat"} for unit in per_unit]
        splits[split] = _pad(chosen, names)
    return splits
