"""Choices and reaction times of two monkeys in the random-dot motion task (Roitman & Shadlen 2002).

Upstream: `doc/downloads/roitman_rts.csv` of GitHub mwshinn/PyDDM at commit a1345d18 (MIT), made by PyDDM from
the Shadlen lab's public release: all sessions of both monkeys, rows with missing values dropped. 6,149
trials: monkey B (code 1) 2,615, monkey N (code 2) 3,534; coherences 0, 3.2, 6.4, 12.8, 25.6, 51.2 %;
81 % correct; RTs 5-1,762 ms (a few are implausibly short: filter, e.g., rt_ms < 100). There is no session
or signed motion direction column, so `correct` is the accuracy-coded choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.data.subsets import check_subset
from tasks.data.tables import numeric_column, read_csv_columns
from engine.task.datasets import DataFile, Dataset, DatasetError, fetch, github_raw_url

__all__ = ["MONKEY_NAMES", "ROITMAN_SHADLEN_RT", "RoitmanTrials", "load_roitman_rts"]

ROITMAN_SHADLEN_RT = Dataset(
    name="roitman-shadlen-rt",
    files=(
        DataFile(
            name="roitman_rts.csv",
            url=github_raw_url(
                "mwshinn/PyDDM", "a1345d1833bd1565e5def8a99bb540b698206b99", "doc/downloads/roitman_rts.csv"
            ),
            sha256="7ac2daa16e9631aa189ae146a89f9f29cc6fccd6c0f31b4d5849990a6cebbd4b",
        ),
    ),
    licence="PyDDM repository, MIT (Copyright 2018 Maxwell Shinn, Norman Lam); data publicly released by the "
    "Shadlen lab: cite the paper.",
    citation="Roitman, J. D., & Shadlen, M. N. (2002). Response of neurons in the lateral intraparietal area during "
    "a combined visual discrimination reaction time task. Journal of Neuroscience, 22(21), 9475-9489.",
)

MONKEY_NAMES: dict[int, str] = {1: "B", 2: "N"}
"""Upstream monkey code -> the monkey's name in the paper."""


@dataclass(frozen=True, slots=True)
class RoitmanTrials:
    """One entry per trial, in file order (monkey B's trials first).

    Attributes:
        monkey: (n_trials,) int64 upstream code, 1 = monkey B, 2 = monkey N (see MONKEY_NAMES).
        coherence: (n_trials,) float64 motion coherence as a proportion, 0-0.512 (0.128 = 12.8 % coherent dots).
        correct: (n_trials,) int64, 1 = correct choice, 0 = error (arbitrary at coherence 0).
        target_choice: (n_trials,) int64, the target chosen, 1 or 2 (upstream "trgchoice").
        rt_ms: (n_trials,) float64 reaction time from dots onset to saccade, ms.
    """

    monkey: np.ndarray
    coherence: np.ndarray
    correct: np.ndarray
    target_choice: np.ndarray
    rt_ms: np.ndarray


def load_roitman_rts(subset: int | None = None) -> RoitmanTrials:
    """Returns the trials of roitman_rts.csv.

    Args:
        subset: keep only the first `subset` trials of each monkey (in file order); None = all trials.
    """
    path = fetch(ROITMAN_SHADLEN_RT, "roitman_rts.csv")
    columns = read_csv_columns(path, ("monkey", "rt", "coh", "correct", "trgchoice"))
    monkey = numeric_column(columns, "monkey", path).astype(np.int64)
    if not set(np.unique(monkey).tolist()) <= set(MONKEY_NAMES):
        raise DatasetError(f"{path}: expected monkey codes 1 or 2; found {sorted(set(np.unique(monkey).tolist()))}.")
    if subset is None:
        keep = np.ones(monkey.size, bool)
    else:
        fewest = min(int(np.sum(monkey == code)) for code in np.unique(monkey))
        check_subset(subset, "trials per monkey", fewest)
        rank_within_monkey = np.zeros(monkey.size, np.int64)
        for code in np.unique(monkey):
            rows = np.flatnonzero(monkey == code)
            rank_within_monkey[rows] = np.arange(rows.size)
        keep = rank_within_monkey < subset
    return RoitmanTrials(
        monkey=monkey[keep],
        coherence=numeric_column(columns, "coh", path)[keep],
        correct=numeric_column(columns, "correct", path).astype(np.int64)[keep],
        target_choice=numeric_column(columns, "trgchoice", path).astype(np.int64)[keep],
        rt_ms=np.round(numeric_column(columns, "rt", path)[keep] * 1000.0, 6),  # upstream stores s with ms precision
    )
