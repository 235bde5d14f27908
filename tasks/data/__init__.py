"""The registered datasets and their loaders: each turns the upstream files into plain numpy arrays.

| dataset (mirror folder)  | loader                                   | returns                             |
|--------------------------|------------------------------------------|-------------------------------------|
| hddm-cavanagh-rlddm      | load_rlddm_sequences(subset)             | RlddmSequences (padded, with mask)  |
| hddm-cavanagh-rlddm      | load_cavanagh_theta(subset)              | CavanaghTrials                      |
| bbp-rat-cortex-ccamp     | load_bbp_current_clamp(subset)           | tuple of CurrentClampSweep          |
| goris2015-v1             | load_goris2015(experiment, subset)       | GratingTrials                       |
| roitman-shadlen-rt       | load_roitman_rts(subset)                 | RoitmanTrials                       |

Files are fetched and verified by `engine.task.datasets.fetch` (mirror, cache, then network).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tasks.data.bbp_rat_cortex import BBP_RAT_CORTEX, CurrentClampSweep, load_bbp_current_clamp
from tasks.data.goris2015 import GORIS2015, GratingTrials, load_goris2015
from tasks.data.cavanagh import (
    HDDM_PST,
    PAIR_NAMES,
    CavanaghTrials,
    RlddmSequences,
    load_cavanagh_theta,
    load_rlddm_sequences,
)
from tasks.data.roitman_shadlen import MONKEY_NAMES, ROITMAN_SHADLEN_RT, RoitmanTrials, load_roitman_rts
from engine.task.datasets import Dataset, DatasetError

__all__ = [
    "BBP_RAT_CORTEX",
    "DATASETS",
    "GORIS2015",
    "HDDM_PST",
    "MONKEY_NAMES",
    "PAIR_NAMES",
    "ROITMAN_SHADLEN_RT",
    "CavanaghTrials",
    "CurrentClampSweep",
    "GratingTrials",
    "RlddmSequences",
    "RoitmanTrials",
    "get_dataset",
    "load_bbp_current_clamp",
    "load_cavanagh_theta",
    "load_goris2015",
    "load_rlddm_sequences",
    "load_roitman_rts",
]

DATASETS: Mapping[str, Dataset] = MappingProxyType(
    {dataset.name: dataset for dataset in (HDDM_PST, BBP_RAT_CORTEX, GORIS2015, ROITMAN_SHADLEN_RT)}
)
"""Every registered dataset by name (its folder in the mirror and the cache)."""


def get_dataset(name: str) -> Dataset:
    """Returns the registered dataset called `name`; raises DatasetError listing the registered names otherwise."""
    if name not in DATASETS:
        raise DatasetError(f"No dataset {name!r} is registered. Registered: {', '.join(sorted(DATASETS))}.")
    return DATASETS[name]
