"""Synthetic sessions of a two-alternative choice task whose observer carries a trace of its past choices;
split by session so that held-out sessions are really held out."""

import numpy as np

TRUTH = {"bias": 2.0, "slope": 0.12, "history": 0.6, "decay": 0.5}
STRENGTHS = np.array([-51.2, -25.6, -12.8, -6.4, -3.2, 0.0, 3.2, 6.4, 12.8, 25.6, 51.2])


def load(n_sessions: int = 40, n_trials: int = 200, seed: int = 0) -> dict:
    """Returns {"train", "selection", "test"}: each {"strength", "choice"}, (n_sessions, n_trials) float32
    arrays (choice 1 = right), and "mask", 1.0 for each real trial (0.0 would mark padding)."""
    rng = np.random.default_rng(seed)
    strength = rng.choice(STRENGTHS, size=(n_sessions, n_trials)).astype(np.float32)
    choice = np.zeros((n_sessions, n_trials), np.float32)
    trace = np.zeros(n_sessions)
    for t in range(n_trials):
        log_odds = TRUTH["slope"] * (strength[:, t] - TRUTH["bias"]) + TRUTH["history"] * trace
        choice[:, t] = rng.random(n_sessions) < 1.0 / (1.0 + np.exp(-log_odds))
        trace = TRUTH["decay"] * trace + (2.0 * choice[:, t] - 1.0)
    order = rng.permutation(n_sessions)
    parts = {"train": order[: n_sessions * 6 // 10], "selection": order[n_sessions * 6 // 10: n_sessions * 8 // 10],
             "test": order[n_sessions * 8 // 10:]}
    return {name: {"strength": strength[members], "choice": choice[members],
                   "mask": np.ones((len(members), n_trials), np.float32)} for name, members in parts.items()}
