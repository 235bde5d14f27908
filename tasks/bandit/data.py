"""Data for the bandit task: a synthetic set from a known agent, or the human probabilistic-selection data.

Each split is a dict of numpy arrays, one row per session (a sequence of trials of one two-armed bandit):
    choices: (n_sessions, n_trials) int32, the arm chosen (0 or 1)
    rewards: (n_sessions, n_trials) float32, reward received (0.0 or 1.0)
    mask:    (n_sessions, n_trials) float32, 1.0 for real trials, 0.0 for padding
"""

from __future__ import annotations

import numpy as np

# The synthetic ground truth: Q-learning with forgetting of the unchosen value and choice perseveration.
# It is deliberately not the seed (plain Q-learning), so the search has a mechanism to find.
GROUND_TRUTH = {"alpha": 0.4, "beta": 6.0, "forget": 0.2, "perseveration": 1.2}
N_STATE = 8


def ground_truth_agent_numpy(params, state, choice, reward):
    """The generating agent, in numpy; the same arithmetic as `baselines/forgetting_perseveration.py`'s JAX agent."""
    q = state[:2].copy()
    q[choice] += params["alpha"] * (reward - q[choice])
    q[1 - choice] *= 1.0 - params["forget"]
    last = np.zeros(2)
    last[choice] = 1.0
    logits = params["beta"] * q + params["perseveration"] * last
    new_state = state.copy()
    new_state[:2] = q
    new_state[2:4] = last
    return logits, new_state


def simulate_sessions(
    params: dict[str, float], n_sessions: int, n_trials: int, seed: int, drift_sd: float = 0.04
) -> dict[str, np.ndarray]:
    """Simulates the ground-truth agent on restless two-armed bandits.

    Reward probabilities follow independent Gaussian random walks (sd `drift_sd` per trial) reflected into
    [0.1, 0.9], the usual restless-bandit design that makes forgetting and perseveration identifiable.
    """
    rng = np.random.default_rng(seed)
    choices = np.zeros((n_sessions, n_trials), np.int32)
    rewards = np.zeros((n_sessions, n_trials), np.float32)
    for s in range(n_sessions):
        p_reward = rng.uniform(0.2, 0.8, size=2)
        state = np.zeros(N_STATE)
        logits = np.zeros(2)
        for t in range(n_trials):
            p_choice = np.exp(logits - logits.max())
            p_choice /= p_choice.sum()
            choice = int(rng.random() < p_choice[1])
            reward = float(rng.random() < p_reward[choice])
            choices[s, t], rewards[s, t] = choice, reward
            logits, state = ground_truth_agent_numpy(params, state, choice, reward)
            p_reward = p_reward + rng.normal(0.0, drift_sd, size=2)
            p_reward = np.where(p_reward > 0.9, 1.8 - p_reward, p_reward)
            p_reward = np.where(p_reward < 0.1, 0.2 - p_reward, p_reward)
    return {"choices": choices, "rewards": rewards, "mask": np.ones_like(rewards)}


def _take(split: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[rows] for key, value in split.items()}


def load(
    source: str = "synthetic",
    n_sessions: int = 40,
    n_trials: int = 200,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    subset: int | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Returns {"train", "selection", "test"} splits, split by session (synthetic) or by subject (human data).

    Args:
        source: "synthetic" (simulated from GROUND_TRUTH, deterministic given seed) or "cavanagh"
            (human probabilistic-selection learning phase, fetched through the dataset registry).
        n_sessions, n_trials: size of the synthetic set.
        seed: seed of the simulation and of the split.
        fractions: train / selection / test shares of sessions (synthetic) or subjects (human).
        subset: keep only the first `subset` subjects of the human data (small CI runs).
    """
    if source == "synthetic":
        sessions = simulate_sessions(GROUND_TRUTH, n_sessions, n_trials, seed)
        groups = np.arange(n_sessions)
    elif source == "cavanagh":
        sessions, groups = _load_cavanagh(subset)
    else:
        raise ValueError(f"data source '{source}' is unknown; expected 'synthetic' or 'cavanagh'.")
    unique = np.unique(groups)
    order = np.random.default_rng(seed + 1).permutation(unique)
    n_train = int(round(fractions[0] * len(order)))
    n_selection = int(round(fractions[1] * len(order)))
    parts = {
        "train": order[:n_train],
        "selection": order[n_train : n_train + n_selection],
        "test": order[n_train + n_selection :],
    }
    return {name: _take(sessions, np.isin(groups, members)) for name, members in parts.items()}


def _load_cavanagh(subset: int | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each (subject, stimulus pair) is one session: the three pairs are independent two-armed bandits."""
    from tasks.data.cavanagh import load_rlddm_sequences

    sequences = load_rlddm_sequences(subset=subset)
    sessions = {
        "choices": sequences.choices.astype(np.int32),
        "rewards": sequences.rewards.astype(np.float32),
        "mask": sequences.mask.astype(np.float32),
    }
    return sessions, np.asarray(sequences.subject_ids)
