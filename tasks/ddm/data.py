"""Data for the ddm task: the Roitman & Shadlen (2002) reaction-time trials, or a synthetic twin simulated from a
collapsing-bound drift-diffusion model at the same coherences.

Each split is a dict of numpy arrays with one row per monkey (group), padded to the longest row:
    coherences:      (n_groups, n_coherences) float32, the coherence levels as proportions (0 ... 0.512)
    coherence_index: (n_groups, n_trials) int32, index of each trial's coherence in `coherences`
    correct:         (n_groups, n_trials) int32, 1 = correct choice, 0 = error (accuracy-coded choice)
    rt_s:            (n_groups, n_trials) float32, reaction time from dots onset to saccade, s
    mask:            (n_groups, n_trials) float32, 1.0 for real trials, 0.0 for padding

Held-out split: in each monkey's trials (file order, which follows the recording sessions), consecutive blocks of
BLOCK_TRIALS trials are dealt out in turn, 3 blocks to train, 1 to selection, 1 to test. Held-out trials thus come
from other stretches of the sessions than the training trials, not from interleaved neighbours.
"""

from __future__ import annotations

import numpy as np

COHERENCES = (0.0, 0.032, 0.064, 0.128, 0.256, 0.512)
BLOCK_TRIALS = 100
BLOCK_CYCLE = ("train", "train", "train", "selection", "test")
MIN_RT_S = 0.1  # faster responses are anticipations, not decisions about the dots (a handful of trials)
MAX_DECISION_S = 2.0  # the synthetic twin drops the (rare) trials that have not decided by then

# The synthetic twin's generating model: drift-diffusion with hyperbolically collapsing bounds
# (baselines/collapsing_bound.py), one parameter set per simulated monkey. It is deliberately not the seed.
GROUND_TRUTH: dict[str, dict[str, float]] = {
    "B": {"k": 11.0, "bound": 1.0, "collapse": 0.6, "t_half_s": 0.4, "nondecision_s": 0.33},
    "N": {"k": 14.0, "bound": 1.3, "collapse": 0.7, "t_half_s": 0.3, "nondecision_s": 0.28},
}
MONKEYS = ("B", "N")  # upstream codes 1 and 2


def simulate_collapsing_bound(
    params: dict[str, float], coherence: np.ndarray, rng: np.random.Generator, dt_s: float = 0.0005
) -> tuple[np.ndarray, np.ndarray]:
    """Simulates one trial per entry of `coherence` by Euler-Maruyama steps of the ground-truth model.

    Returns:
        correct: (n,) int32, 1 when the upper bound was reached first, -1 when no bound was reached in time.
        rt_s: (n,) float64 reaction time (decision time + non-decision time), s; NaN when undecided.
    """
    n = coherence.shape[0]
    x = np.zeros(n)
    decided = np.zeros(n, bool)
    correct = np.full(n, -1, np.int32)
    rt_s = np.full(n, np.nan)
    drift = params["k"] * coherence
    for step in range(1, int(round(MAX_DECISION_S / dt_s)) + 1):
        t = step * dt_s
        bound = params["bound"] * (1.0 - params["collapse"] * t / (t + params["t_half_s"]))
        x = x + drift * dt_s + np.sqrt(dt_s) * rng.standard_normal(n)
        crossed = ~decided & (np.abs(x) >= bound)
        correct[crossed] = (x[crossed] > 0).astype(np.int32)
        rt_s[crossed] = t + params["nondecision_s"]
        decided |= crossed
        if decided.all():
            break
    return correct, rt_s


def _real_trials(subset: int | None) -> dict[str, np.ndarray]:
    from tasks.data import load_roitman_rts

    trials = load_roitman_rts(subset=subset)
    return {
        "group": trials.monkey - 1,
        "coherence": trials.coherence,
        "correct": trials.correct.astype(np.int32),
        "rt_s": trials.rt_ms / 1000.0,
    }


def _synthetic_trials(subset: int | None, seed: int) -> dict[str, np.ndarray]:
    real = _real_trials(subset)
    rng = np.random.default_rng(seed)
    correct = np.zeros_like(real["correct"])
    rt_s = np.zeros_like(real["rt_s"])
    for group, monkey in enumerate(MONKEYS):
        rows = np.flatnonzero(real["group"] == group)
        correct[rows], rt_s[rows] = simulate_collapsing_bound(GROUND_TRUTH[monkey], real["coherence"][rows], rng)
    decided = correct >= 0
    return {"group": real["group"][decided], "coherence": real["coherence"][decided],
            "correct": correct[decided], "rt_s": rt_s[decided]}


def _pack(trials: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """Packs the kept trials into one padded row per group."""
    rows = [np.flatnonzero(keep & (trials["group"] == group)) for group in range(len(MONKEYS))]
    width = max(len(r) for r in rows)
    levels = np.asarray(COHERENCES)
    split = {
        "coherences": np.tile(levels.astype(np.float32), (len(rows), 1)),
        "coherence_index": np.zeros((len(rows), width), np.int32),
        "correct": np.zeros((len(rows), width), np.int32),
        "rt_s": np.full((len(rows), width), 0.5, np.float32),  # padding: any valid RT, masked out
        "mask": np.zeros((len(rows), width), np.float32),
    }
    for g, r in enumerate(rows):
        index = np.abs(trials["coherence"][r][:, None] - levels[None, :]).argmin(axis=1)
        split["coherence_index"][g, : len(r)] = index
        split["correct"][g, : len(r)] = trials["correct"][r]
        split["rt_s"][g, : len(r)] = trials["rt_s"][r]
        split["mask"][g, : len(r)] = 1.0
    return split


def load(
    source: str = "roitman", seed: int = 0, subset: int | None = None, block_trials: int = BLOCK_TRIALS
) -> dict[str, dict[str, np.ndarray]]:
    """Returns {"train", "selection", "test"} splits (blocks of BLOCK_TRIALS trials per monkey dealt out in turn).

    Args:
        source: "roitman" (the real trials, through the dataset registry) or "synthetic" (the ground-truth
            collapsing-bound model simulated at the real trials' coherences, one parameter set per monkey).
        seed: seed of the synthetic simulation (the split itself is fixed by trial order).
        subset: keep only the first `subset` trials of each monkey (small CI runs).
        block_trials: trials per block of the split (smaller blocks for small subsets).
    """
    if source == "roitman":
        trials = _real_trials(subset)
    elif source == "synthetic":
        trials = _synthetic_trials(subset, seed)
    else:
        raise ValueError(f"data source '{source}' is unknown; expected 'roitman' or 'synthetic'.")
    trials_kept = trials["rt_s"] >= MIN_RT_S
    position = np.zeros(trials["group"].shape[0], np.int64)
    for group in range(len(MONKEYS)):
        rows = np.flatnonzero(trials["group"] == group)
        position[rows] = np.arange(rows.size)
    block_role = np.asarray(BLOCK_CYCLE)[(position // block_trials) % len(BLOCK_CYCLE)]
    return {name: _pack(trials, trials_kept & (block_role == name)) for name in ("train", "selection", "test")}
