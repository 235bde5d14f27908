"""Mouse two-armed bandit sessions (Sabatini lab pilot data, shayqn/mouse_bandit), read from the offline mirror.

For benchmark scripts only. The upstream repository has no licence, so the project registers nothing for these
data and never downloads them: this module reads `<mirror>/mouse-2abt-neufeld/mouse_2abt_trials.csv.gz`
directly, where <mirror> is DISCOVER_DATA_MIRROR or, if unset, shared/data beside the repository.
The table holds 340,670 trials of 806 sessions of 18 mice; 429 sessions (215,723 trials) are the bandit task
proper, with reward probabilities 90/10, 80/20 or 70/30 that switch between blocks.

Cite: Beron, Neufeld, Linderman & Sabatini (2022). PNAS 119(15), e2113961119.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BANDIT_PHASES: tuple[str, ...] = ("bandit_90_10", "bandit_80_20", "bandit_70_30")
FILE = Path("mouse-2abt-neufeld") / "mouse_2abt_trials.csv.gz"


@dataclass(frozen=True, slots=True)
class MouseSessions:
    """Sessions as padded (n_sessions, max_trials) arrays in trial order; padding is 0 (use `mask`).

    Attributes:
        choice_right: int64, 1 = the mouse chose the right port, 0 = the left port.
        reward: float64, 1.0 = water delivered.
        p_right, p_left: float64 reward probability of each port on that trial (blocks switch).
        init_to_decision_s: float64 time from trial initiation (centre poke) to the decision poke, s.
        mask: bool, True where a trial exists.
        n_trials: (n_sessions,) int64.
        sessions, mice, phases: tuples of n_sessions strings ("K13_20170310", "K13", "bandit_80_20").
    """

    choice_right: np.ndarray
    reward: np.ndarray
    p_right: np.ndarray
    p_left: np.ndarray
    init_to_decision_s: np.ndarray
    mask: np.ndarray
    n_trials: np.ndarray
    sessions: tuple[str, ...]
    mice: tuple[str, ...]
    phases: tuple[str, ...]


def mirror_file() -> Path:
    """Returns the path of the trial table in the mirror; raises FileNotFoundError saying where it looked."""
    value = os.environ.get("DISCOVER_DATA_MIRROR", "").strip()
    mirror = Path(value) if value else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    path = mirror / FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found. These unlicensed data are read only from a local mirror: set DISCOVER_DATA_MIRROR "
            f"to a folder holding {FILE}."
        )
    return path


def load_mouse_sessions(phases: Sequence[str] = BANDIT_PHASES, subset: int | None = None) -> MouseSessions:
    """Returns the sessions whose session_phase is in `phases`, sorted by session name.

    Args:
        phases: session phases to keep (default: the three bandit phases; "training_or_mixed" is the rest).
        subset: keep only the first `subset` sessions (None = all).
    """
    rows_by_session: dict[str, list[dict[str, str]]] = defaultdict(list)
    with gzip.open(mirror_file(), "rt", newline="") as stream:
        for row in csv.DictReader(stream):
            if row["session_phase"] in phases:
                rows_by_session[row["session"]].append(row)
    names = sorted(rows_by_session)[:subset]
    if not names:
        raise ValueError(f"no session has a phase in {list(phases)}; phases are {BANDIT_PHASES} or training_or_mixed.")
    ordered = [sorted(rows_by_session[name], key=lambda row: int(row["trial"])) for name in names]
    n_trials = np.array([len(rows) for rows in ordered], dtype=np.int64)
    shape = (len(names), int(n_trials.max()))

    def padded(column: str, dtype: type) -> np.ndarray:
        out = np.zeros(shape, dtype)
        for index, rows in enumerate(ordered):
            out[index, : len(rows)] = [float(row[column]) for row in rows]
        return out

    return MouseSessions(
        choice_right=padded("choice_right", np.int64),
        reward=padded("reward", np.float64),
        p_right=padded("p_right", np.float64),
        p_left=padded("p_left", np.float64),
        init_to_decision_s=padded("init_to_decision_s", np.float64),
        mask=np.arange(shape[1])[None, :] < n_trials[:, None],
        n_trials=n_trials,
        sessions=tuple(names),
        mice=tuple(rows[0]["mouse"] for rows in ordered),
        phases=tuple(rows[0]["session_phase"] for rows in ordered),
    )
