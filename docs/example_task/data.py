"""Synthetic psychometric data from a known model, split by block so held-out blocks are really held out.

Real data would come through the dataset registry instead:

    from engine.task.datasets import DataFile, Dataset, fetch
    DATASET = Dataset(name="my-lab-2026", files=(DataFile(name="trials.csv", url="https://.../trials.csv",
                      sha256="..."),), licence="CC-BY-4.0", citation="...")
    path = fetch(DATASET, "trials.csv")   # mirror, then cache, then download; verified by sha256
"""

import numpy as np

TRUTH = {"bias": 2.0, "slope": 0.15, "lapse": 0.06}
STRENGTHS = np.array([-51.2, -25.6, -12.8, -6.4, -3.2, 0.0, 3.2, 6.4, 12.8, 25.6, 51.2])


def load(n_blocks: int = 30, seed: int = 0) -> dict:
    """Returns {"train", "selection", "test"}: each {"strength": (n,) float32, "choice": (n,) float32 (1 = right)}."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(n_blocks):
        strength = np.repeat(STRENGTHS, 4)
        p_right = TRUTH["lapse"] + (1 - 2 * TRUTH["lapse"]) / (1 + np.exp(-TRUTH["slope"] * (strength - TRUTH["bias"])))
        blocks.append({"strength": strength.astype(np.float32), "choice": (rng.random(strength.size) < p_right).astype(np.float32)})
    order = rng.permutation(n_blocks)
    parts = {"train": order[: n_blocks * 6 // 10], "selection": order[n_blocks * 6 // 10 : n_blocks * 8 // 10], "test": order[n_blocks * 8 // 10 :]}
    return {
        name: {key: np.concatenate([blocks[i][key] for i in members]) for key in ("strength", "choice")}
        for name, members in parts.items()
    }
