"""Human probabilistic selection task (PST) data shipped as examples with HDDM.

Upstream: GitHub hddm-devs/hddm at commit 19feaa98, folder hddm/examples/ (BSD 2-Clause).

- `rlddm_data.csv`, the learning phase: 28 subjects (ids 3-80, 113-360 trials each; 5,280 trials) choose
  between the two symbols of one of three pairs, AB (the better symbol is rewarded with probability 0.8,
  the worse 0.2), CD (0.7/0.3) and EF (0.6/0.4), with feedback. Q-values are learned separately per pair,
  so the loader returns one sequence per (subject, pair): 84 sequences of 37-120 trials. Columns used:
  subj_idx, response (1 = chose the better symbol), split_by (0 = AB, 1 = CD, 2 = EF), rt (s),
  trial (number within the pair, 1-based; a few trials are missing), feedback (reward, 1/0).
- `cavanagh_theta_nn.csv`, the test phase of Cavanagh et al. (2011): 14 Parkinson's patients (3,988 trials)
  with deep-brain stimulation on or off, choosing without feedback between pairs of learned symbols.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.data.subsets import check_subset
from tasks.data.tables import numeric_column, read_csv_columns
from engine.task.datasets import DataFile, Dataset, DatasetError, fetch, github_raw_url

__all__ = [
    "HDDM_PST",
    "PAIR_NAMES",
    "RlddmSequences",
    "CavanaghTrials",
    "load_cavanagh_theta",
    "load_rlddm_sequences",
]

_REPOSITORY = "hddm-devs/hddm"
_COMMIT = "19feaa9849619931d306094b48d9803ef9c8d0bd"

HDDM_PST = Dataset(
    name="hddm-cavanagh-rlddm",
    files=(
        DataFile(
            name="rlddm_data.csv",
            url=github_raw_url(_REPOSITORY, _COMMIT, "hddm/examples/rlddm_data.csv"),
            sha256="7da583ddc29fe34e8974fc5dc56051dd4c225e17663fb0d8133fa7dd5327c550",
        ),
        DataFile(
            name="cavanagh_theta_nn.csv",
            url=github_raw_url(_REPOSITORY, _COMMIT, "hddm/examples/cavanagh_theta_nn.csv"),
            sha256="52193c5a6f7a1712369dfa5d6df10007fa49d8b8d501a0cbc4a3c58046314706",
        ),
    ),
    licence="HDDM repository, BSD 2-Clause (Copyright (c) 2021, Wiecki, Sofer, Pedersen, Fengler, Govindarajan, "
    "Bera, Frank, Brown University); keep the notice and cite the papers.",
    citation="Cavanagh, J. F., Wiecki, T. V., et al. (2011). Subthalamic nucleus stimulation reverses mediofrontal "
    "influence over decision threshold. Nature Neuroscience, 14, 1462-1467. Pedersen, M. L., Frank, M. J., & "
    "Biele, G. (2017). The drift diffusion model as the choice rule in reinforcement learning. Psychonomic "
    "Bulletin & Review, 24, 1234-1251. Wiecki, Sofer & Frank (2013). HDDM. Frontiers in Neuroinformatics, 7:14.",
)

PAIR_NAMES: tuple[str, ...] = ("AB", "CD", "EF")
"""Symbol pairs by code: the better symbol is rewarded with probability 0.8, 0.7, 0.6 (the worse: 0.2, 0.3, 0.4)."""


@dataclass(frozen=True, slots=True)
class RlddmSequences:
    """Learning-phase choices as padded per-(subject, pair) sequences, trials in the order they were played.

    Entries past a sequence's end are padding (0 in every array); use `mask`.

    Attributes:
        choices: (n_sequences, max_trials) int64, 1 = chose the better symbol of the pair, 0 = the worse one.
        rewards: (n_sequences, max_trials) float64 feedback, 1.0 = rewarded, 0.0 = not.
        rt_s: (n_sequences, max_trials) float64 reaction time, s.
        trial_numbers: (n_sequences, max_trials) int64, each trial's number within its pair (1-based, upstream).
        mask: (n_sequences, max_trials) bool, True where a trial exists.
        n_trials: (n_sequences,) int64 number of real trials in each sequence.
        subject_ids: (n_sequences,) int64 upstream subject id (subj_idx); split train/test by subject.
        pairs: (n_sequences,) int64 pair code, an index into PAIR_NAMES (0 = AB, 1 = CD, 2 = EF).
    """

    choices: np.ndarray
    rewards: np.ndarray
    rt_s: np.ndarray
    trial_numbers: np.ndarray
    mask: np.ndarray
    n_trials: np.ndarray
    subject_ids: np.ndarray
    pairs: np.ndarray


def load_rlddm_sequences(subset: int | None = None) -> RlddmSequences:
    """Returns the learning-phase choices of rlddm_data.csv, one sequence per (subject, pair), sorted by both.

    Args:
        subset: keep only the first `subset` subjects in increasing id order; None = all 28.
    """
    path = fetch(HDDM_PST, "rlddm_data.csv")
    columns = read_csv_columns(path, ("subj_idx", "response", "split_by", "rt", "trial", "feedback"))
    subject = numeric_column(columns, "subj_idx", path).astype(np.int64)
    pair = numeric_column(columns, "split_by", path).astype(np.int64)
    choice = numeric_column(columns, "response", path).astype(np.int64)
    reward = numeric_column(columns, "feedback", path)
    rt_s = numeric_column(columns, "rt", path)
    trial_number = numeric_column(columns, "trial", path).astype(np.int64)
    if not set(np.unique(pair)) <= set(range(len(PAIR_NAMES))):
        raise DatasetError(f"{path}: expected split_by in 0, 1, 2; found {sorted(set(np.unique(pair).tolist()))}.")

    if not set(np.unique(choice).tolist()) <= {0, 1}:
        raise DatasetError(f"{path}: expected response to be 0 or 1; found {sorted(set(np.unique(choice).tolist()))}.")

    all_subjects = np.unique(subject)
    kept = set(all_subjects[: check_subset(subset, "subjects", all_subjects.size)].tolist())
    keys = sorted({(s, p) for s, p in zip(subject.tolist(), pair.tolist()) if s in kept})
    rows_per_key = []
    for s, p in keys:
        rows = np.flatnonzero((subject == s) & (pair == p))
        rows_per_key.append(rows[np.argsort(trial_number[rows], kind="stable")])
    n_trials = np.array([rows.size for rows in rows_per_key], dtype=np.int64)
    shape = (len(keys), int(n_trials.max()))
    padded = {
        "choices": np.zeros(shape, np.int64),
        "rewards": np.zeros(shape, np.float64),
        "rt_s": np.zeros(shape, np.float64),
        "trial_numbers": np.zeros(shape, np.int64),
        "mask": np.zeros(shape, bool),
    }
    for index, rows in enumerate(rows_per_key):
        padded["choices"][index, : rows.size] = choice[rows]
        padded["rewards"][index, : rows.size] = reward[rows]
        padded["rt_s"][index, : rows.size] = rt_s[rows]
        padded["trial_numbers"][index, : rows.size] = trial_number[rows]
        padded["mask"][index, : rows.size] = True
    return RlddmSequences(
        **padded,
        n_trials=n_trials,
        subject_ids=np.array([s for s, _ in keys], dtype=np.int64),
        pairs=np.array([p for _, p in keys], dtype=np.int64),
    )


@dataclass(frozen=True, slots=True)
class CavanaghTrials:
    """Test-phase trials of Cavanagh et al. (2011), one entry per trial, in file order.

    Attributes:
        subject: (n_trials,) int64 subject id, 0-13.
        stimulus: (n_trials,) str pair type: "WW" (win-win), "LL" (lose-lose), both high conflict, or "WL".
        high_conflict: (n_trials,) bool, True for WW and LL pairs (conf == "HC").
        rt_s: (n_trials,) float64 reaction time, s.
        response: (n_trials,) int64, 1 = chose the symbol with the higher learned reward rate, 0 = the other.
        theta: (n_trials,) float64 single-trial mid-frontal EEG theta power, z-scored (no unit).
        dbs_on: (n_trials,) bool, True = deep-brain stimulation on.
    """

    subject: np.ndarray
    stimulus: np.ndarray
    high_conflict: np.ndarray
    rt_s: np.ndarray
    response: np.ndarray
    theta: np.ndarray
    dbs_on: np.ndarray


def load_cavanagh_theta(subset: int | None = None) -> CavanaghTrials:
    """Returns the test-phase trials of cavanagh_theta_nn.csv.

    Args:
        subset: keep only the trials of the first `subset` subjects in increasing id order; None = all 14.
    """
    path = fetch(HDDM_PST, "cavanagh_theta_nn.csv")
    columns = read_csv_columns(path, ("subj_idx", "stim", "rt", "response", "theta", "dbs", "conf"))
    subject = numeric_column(columns, "subj_idx", path).astype(np.int64)
    conflict = np.array(columns["conf"])
    if not set(conflict.tolist()) <= {"HC", "LC"}:
        raise DatasetError(f"{path}: expected conf to be HC or LC; found {sorted(set(conflict.tolist()))}.")
    subjects = np.unique(subject)
    keep = np.isin(subject, subjects[: check_subset(subset, "subjects", subjects.size)])
    return CavanaghTrials(
        subject=subject[keep],
        stimulus=np.array(columns["stim"])[keep],
        high_conflict=(conflict == "HC")[keep],
        rt_s=numeric_column(columns, "rt", path)[keep],
        response=numeric_column(columns, "response", path).astype(np.int64)[keep],
        theta=numeric_column(columns, "theta", path)[keep],
        dbs_on=(numeric_column(columns, "dbs", path) == 1.0)[keep],
    )
