"""Data for the ddm_sim task: the same trials and splits as the ddm task (tasks/ddm/data.py), which this module
re-exports. The Roitman & Shadlen (2002) reaction-time trials come through the dataset registry
(`tasks.data.load_roitman_rts`); the synthetic twin is simulated there from a collapsing-bound drift-diffusion
model (parameters per monkey in `tasks.ddm.data.GROUND_TRUTH`).

Each split is a dict of numpy arrays with one row per monkey (group), padded to the longest row:
    coherences (n_groups, n_coherences) proportions; coherence_index, correct (int32), rt_s (float32, s) and
    mask (float32, 1 = real trial) all (n_groups, n_trials).
"""

from __future__ import annotations

import numpy as np

from tasks.ddm.data import BLOCK_TRIALS, COHERENCES, GROUND_TRUTH, MONKEYS
from tasks.ddm.data import load as _load_ddm

__all__ = ["BLOCK_TRIALS", "COHERENCES", "GROUND_TRUTH", "MONKEYS", "load"]


def load(
    source: str = "roitman", seed: int = 0, subset: int | None = None, block_trials: int = BLOCK_TRIALS
) -> dict[str, dict[str, np.ndarray]]:
    """Returns {"train", "selection", "test"} splits; see tasks.ddm.data.load for the arguments."""
    return _load_ddm(source=source, seed=seed, subset=subset, block_trials=block_trials)
