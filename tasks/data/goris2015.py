"""Spike counts of macaque V1/V2 single units to drifting gratings and grating mixtures (Goris et al. 2015).

Upstream: folder matlab/problems/goris2015/ of GitHub lacerbi/infbench at commit ac9dc742 (GPL-3.0 repository;
the data are redistributed there with Robbe Goris's permission: research use with attribution). Six real units,
anesthetized macaque: m620r12 (V2), m620r35, m624l54, m625r58, m625r62, m627r58 (V1). Two experiments:

- "sf": one drifting grating at the unit's preferred direction, full contrast, 11 spatial frequencies
  0.1-10 c/deg (m625r58: 2.3-8 c/deg), 1 s, plus blank trials; 34-85 trials per unit (356 in all).
- "tp" ("TexPat"): sums of up to 9 drifting gratings (components) around one of 16 directions (22.5 deg
  steps), 5 families of orientation bandwidth, several total contrasts, at one spatial frequency per unit;
  1,442-1,760 trials per unit (10,242 in all), 130-160 of them blank (all components NaN).

File layout (MATLAB 5 files, read with scipy.io.loadmat):

    <unit>_<exp>.mat, one variable S:
      S.unitLabel                   the unit id, e.g. 'm620r35'
      S.<exp>.exp                   the experiment (<exp> = sf or tp)
        .fileName                   the stimulus file, e.g. 'm620r35#2[sf11].xml'
        .xPos, .yPos, .size         receptive-field centre and aperture diameter, deg
        .latency                    response latency, ms (the spike-count window is shifted by it)
        .ori, .sf, .nBlankPasses, .nStimPasses, .blankDuration, .stimDuration      the stimulus design
        .sponRateMean/Var, .stimRateMean/Var, .modRatioGeoMean   the authors' per-condition summaries
        .trial                      one entry per trial, each field (n_trials,):
          .num, .blockID            trial number (1-based), stimulus-condition id
          .duration                 stimulus duration, s
          .spikeCount               spikes in the (latency-shifted) stimulus window: the authors' count
          .spikeTimes               cell of spike-time vectors, s from stimulus onset
          .f1                       first-harmonic response at the drift frequency, complex
          .ori .sf .tf .ph .con     cell(9): one (n_trials,) vector per grating component: direction (deg),
                                    spatial frequency (c/deg), temporal frequency (Hz), phase, contrast (0-1).
                                    In the sf files only component 1 is filled (the others hold one NaN).
      S.tp.mod                      (tp files only) the authors' model fits: not read here
    dataList.mat, one variable N with cell(1, 87) fields unitName, unitType ('V1'/'V2'), isolation, comment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.io

from tasks.data.subsets import check_subset
from engine.task.datasets import DataFile, Dataset, DatasetError, fetch, github_raw_url

__all__ = ["GORIS2015", "N_COMPONENTS", "UNITS", "GratingTrials", "load_goris2015"]

_REPOSITORY = "lacerbi/infbench"
_COMMIT = "ac9dc7428fd74525d1e8fbb7954a7996e57c4948"
_FOLDER = "matlab/problems/goris2015/"

UNITS: tuple[str, ...] = ("m620r12", "m620r35", "m624l54", "m625r58", "m625r62", "m627r58")
"""The real units, in the loader's order (m620r12 is the V2 unit)."""

N_COMPONENTS = 9
"""Grating components per trial in the upstream files."""

_SHA256 = {
    "dataList.mat": "1c6d8f385a413b747f6fe5d53f76b41ff6696b0215cbfa2d74ed8c9a15719111",
    "raw_sf_mat/m620r12_sf.mat": "85f3185c5970f37c1ae3bfb5e65446c06c162bd423b6b7796601c3bd9fffd91c",
    "raw_sf_mat/m620r35_sf.mat": "30ead718cf2857f340427ee5809bcb4e7ef4c19cd8d2a3788f25100328235c99",
    "raw_sf_mat/m624l54_sf.mat": "7c22c1bc648a9d9389e4aa36a245ba91ebe7f728e87e9698b6828d0eaa66e92d",
    "raw_sf_mat/m625r58_sf.mat": "7b359b2843dc76f015cd77a7790f0807cdb6dfc9db3ed7a322799017a0eebc6c",
    "raw_sf_mat/m625r62_sf.mat": "90dc0b8f2daa7292f343f12203e6d60adcf8431cf0a2d9f9f3f0f3c66e588587",
    "raw_sf_mat/m627r58_sf.mat": "4d42c2f19f313e15b21a599004eb21b2ed0ef7be95e0914a076ba3a688c66aed",
    "raw_tp_mat/m620r12_tp.mat": "9b24992ec530599ef763b1d988078152555b42a8f1c7b25563d1552d45bbdc86",
    "raw_tp_mat/m620r35_tp.mat": "933d2ff509ef59bb0993e6ced3637d08556030e8d1960146b49abf39f9b23baa",
    "raw_tp_mat/m624l54_tp.mat": "634f6a297601eada409f695a73e59781fa594376272d3582aeedeeb3407d8568",
    "raw_tp_mat/m625r58_tp.mat": "2fbba90ca4bcca1ed7e6700275a31554f037bef214e193df08776a44c7dddda7",
    "raw_tp_mat/m625r62_tp.mat": "1dfe47e3daadf3fa9ad6f04c38fe9db6c636534fef9fe1a0f2c19beb6a632338",
    "raw_tp_mat/m627r58_tp.mat": "098853c6fc8aa612659b93ca8f8d489d382059c4867aeb9f64a661baa35c392f",
}

GORIS2015 = Dataset(
    name="goris2015-v1",
    files=tuple(
        DataFile(
            name=name,
            # Upstream keeps every file in one folder; the mirror sorts the unit files into raw_sf_mat/ and raw_tp_mat/.
            url=github_raw_url(_REPOSITORY, _COMMIT, _FOLDER + name.rpartition("/")[2]),
            sha256=sha256,
        )
        for name, sha256 in _SHA256.items()
    ),
    licence="lacerbi/infbench (GPL-3.0 repository); the data are redistributed there with the author's "
    "permission: research use with attribution, ask before public redistribution.",
    citation="Goris, R. L. T., Simoncelli, E. P., & Movshon, J. A. (2015). Origin and function of tuning diversity "
    "in macaque visual cortex. Neuron, 88(4), 819-831.",
)


@dataclass(frozen=True, slots=True)
class GratingTrials:
    """The trials of one experiment for several units, concatenated unit after unit.

    Per unit (index u, n_units entries):
        unit_names: tuple of unit ids, e.g. ("m620r12", ...).
        unit_areas: tuple of "V1" or "V2" (dataList.mat).
        unit_isolation: (n_units,) float64 isolation score from dataList.mat (3 or 4 for these units).
        latency_ms: (n_units,) float64 response latency the authors used to place the counting window, ms.
        rf_x_deg, rf_y_deg: (n_units,) float64 receptive-field centre, deg of visual angle.
        aperture_deg: (n_units,) float64 stimulus aperture diameter, deg.

    Per trial (n_trials entries; component arrays have N_COMPONENTS = 9 columns, NaN = component absent):
        unit: (n_trials,) int64 index into unit_names.
        trial_number: (n_trials,) int64 upstream trial number within the unit's experiment (1-based).
        block_id: (n_trials,) int64 stimulus-condition id (trials with equal block_id show the same stimulus).
        duration_s: (n_trials,) float64 stimulus duration, s (about 1).
        spike_count: (n_trials,) int64 spikes in the stimulus window, the authors' latency-corrected count.
        f1: (n_trials,) complex128 first-harmonic (drift-frequency) response; NaN on blank trials.
        is_blank: (n_trials,) bool, True when every component is NaN (no grating shown).
        direction_deg: (n_trials, 9) float64 drift direction of each component, deg.
        spatial_frequency_cpd: (n_trials, 9) float64, cycles/deg.
        temporal_frequency_hz: (n_trials, 9) float64, Hz.
        phase: (n_trials, 9) float64 component phase as stored upstream (0 for every shown component here).
        contrast: (n_trials, 9) float64 Michelson contrast of each component, 0-1 (tp: 0 = component off).
        spike_times_s: (n_spikes,) float64 spike times from stimulus onset, s, trials concatenated; trial i's
            spikes are spike_times_s[spike_offsets[i]:spike_offsets[i + 1]]. Their number can differ from
            spike_count by a spike at the window edge (m620r35 tp: one trial); use spike_count for counts.
        spike_offsets: (n_trials + 1,) int64.
        experiment: "sf" or "tp".
    """

    unit_names: tuple[str, ...]
    unit_areas: tuple[str, ...]
    unit_isolation: np.ndarray
    latency_ms: np.ndarray
    rf_x_deg: np.ndarray
    rf_y_deg: np.ndarray
    aperture_deg: np.ndarray
    unit: np.ndarray
    trial_number: np.ndarray
    block_id: np.ndarray
    duration_s: np.ndarray
    spike_count: np.ndarray
    f1: np.ndarray
    is_blank: np.ndarray
    direction_deg: np.ndarray
    spatial_frequency_cpd: np.ndarray
    temporal_frequency_hz: np.ndarray
    phase: np.ndarray
    contrast: np.ndarray
    spike_times_s: np.ndarray
    spike_offsets: np.ndarray
    experiment: str


def _load_mat(path: Path, variable: str) -> object:
    try:
        contents = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except (ValueError, TypeError, OSError) as error:
        raise DatasetError(f"{path}: expected a MATLAB 5 .mat file; scipy could not read it: {error}") from error
    if variable not in contents:
        found = sorted(key for key in contents if not key.startswith("__"))
        raise DatasetError(f"{path}: expected a variable {variable!r}; found {found}.")
    return contents[variable]


def _field(struct: object, name: str, path: Path) -> object:
    if not hasattr(struct, name):
        found = getattr(struct, "_fieldnames", [])
        raise DatasetError(f"{path}: expected a struct field {name!r}; found {found}.")
    return getattr(struct, name)


def _first_number(value: object) -> float:
    values = np.asarray(value, dtype=np.float64).ravel()
    return float(values[0]) if values.size else float("nan")


def _unit_table(path: Path) -> dict[str, tuple[str, float]]:
    table = _load_mat(path, "N")
    names = [str(name) for name in np.atleast_1d(_field(table, "unitName", path))]
    areas = [str(area) for area in np.atleast_1d(_field(table, "unitType", path))]
    isolation = [_first_number(score) for score in np.atleast_1d(_field(table, "isolation", path))]
    return {name: (area, score) for name, area, score in zip(names, areas, isolation)}


def _components(cell: object, n_trials: int, name: str, path: Path) -> np.ndarray:
    """Returns a (n_trials, 9) float64 array from a cell(9) of per-component vectors (or scalars, for all trials)."""
    vectors = np.atleast_1d(cell)
    if vectors.shape != (N_COMPONENTS,):
        raise DatasetError(
            f"{path}: expected trial.{name} to hold {N_COMPONENTS} component vectors; found {vectors.shape}."
        )
    out = np.full((n_trials, N_COMPONENTS), np.nan)
    for component, vector in enumerate(vectors):
        values = np.atleast_1d(np.asarray(vector, dtype=np.float64))
        if values.size == 0:
            continue
        if values.size == 1:  # the sf files store an unused component as one NaN for all trials
            out[:, component] = values[0]
            continue
        if values.shape != (n_trials,):
            raise DatasetError(
                f"{path}: trial.{name}{{{component + 1}}} has shape {values.shape}; expected ({n_trials},)."
            )
        out[:, component] = values
    return out


def _load_unit(path: Path, experiment: str, unit_name: str) -> dict[str, object]:
    record = _load_mat(path, "S")
    label = str(_field(record, "unitLabel", path))
    if label != unit_name:
        raise DatasetError(f"{path}: expected unit {unit_name}; the file's unitLabel is {label!r}.")
    exp = _field(_field(record, experiment, path), "exp", path)
    trial = _field(exp, "trial", path)
    spike_count = np.atleast_1d(np.asarray(_field(trial, "spikeCount", path))).astype(np.int64)
    n_trials = spike_count.size
    spike_time_cells = np.atleast_1d(_field(trial, "spikeTimes", path))
    spike_times = [np.atleast_1d(np.asarray(times, np.float64)) for times in spike_time_cells]
    if len(spike_times) != n_trials:
        raise DatasetError(f"{path}: {len(spike_times)} spike-time vectors for {n_trials} trials.")
    contrast = _components(_field(trial, "con", path), n_trials, "con", path)
    return {
        "latency_ms": float(_field(exp, "latency", path)),
        "rf_x_deg": float(_field(exp, "xPos", path)),
        "rf_y_deg": float(_field(exp, "yPos", path)),
        "aperture_deg": float(_field(exp, "size", path)),
        "trial_number": np.atleast_1d(np.asarray(_field(trial, "num", path))).astype(np.int64),
        "block_id": np.atleast_1d(np.asarray(_field(trial, "blockID", path))).astype(np.int64),
        "duration_s": np.atleast_1d(np.asarray(_field(trial, "duration", path), np.float64)),
        "spike_count": spike_count,
        "f1": np.atleast_1d(np.asarray(_field(trial, "f1", path), np.complex128)),
        "is_blank": np.isnan(contrast).all(axis=1),
        "direction_deg": _components(_field(trial, "ori", path), n_trials, "ori", path),
        "spatial_frequency_cpd": _components(_field(trial, "sf", path), n_trials, "sf", path),
        "temporal_frequency_hz": _components(_field(trial, "tf", path), n_trials, "tf", path),
        "phase": _components(_field(trial, "ph", path), n_trials, "ph", path),
        "contrast": contrast,
        "spike_times": spike_times,
    }


def load_goris2015(experiment: Literal["sf", "tp"] = "tp", subset: int | None = None) -> GratingTrials:
    """Returns the trials of one experiment for the units in UNITS, from the upstream .mat files.

    Args:
        experiment: "sf" (spatial-frequency tuning) or "tp" (grating mixtures around 16 directions).
        subset: keep only the first `subset` units of UNITS (only their files are fetched); None = all 6.
    """
    if experiment not in ("sf", "tp"):
        raise DatasetError(f"experiment must be 'sf' or 'tp'; got {experiment!r}.")
    unit_names = UNITS[: check_subset(subset, "units", len(UNITS))]
    table = _unit_table(fetch(GORIS2015, "dataList.mat"))
    units = []
    for name in unit_names:
        if name not in table:
            raise DatasetError(f"dataList.mat has no entry for unit {name}; it lists {len(table)} other units.")
        units.append(_load_unit(fetch(GORIS2015, f"raw_{experiment}_mat/{name}_{experiment}.mat"), experiment, name))

    def per_trial(key: str) -> np.ndarray:
        return np.concatenate([unit[key] for unit in units])

    def per_unit(key: str) -> np.ndarray:
        return np.array([unit[key] for unit in units], dtype=np.float64)

    spike_times = [times for unit in units for times in unit["spike_times"]]
    return GratingTrials(
        unit_names=tuple(unit_names),
        unit_areas=tuple(table[name][0] for name in unit_names),
        unit_isolation=np.array([table[name][1] for name in unit_names], dtype=np.float64),
        latency_ms=per_unit("latency_ms"),
        rf_x_deg=per_unit("rf_x_deg"),
        rf_y_deg=per_unit("rf_y_deg"),
        aperture_deg=per_unit("aperture_deg"),
        unit=np.concatenate([np.full(unit["spike_count"].size, index, np.int64) for index, unit in enumerate(units)]),
        trial_number=per_trial("trial_number"),
        block_id=per_trial("block_id"),
        duration_s=per_trial("duration_s"),
        spike_count=per_trial("spike_count"),
        f1=per_trial("f1"),
        is_blank=per_trial("is_blank"),
        direction_deg=per_trial("direction_deg"),
        spatial_frequency_cpd=per_trial("spatial_frequency_cpd"),
        temporal_frequency_hz=per_trial("temporal_frequency_hz"),
        phase=per_trial("phase"),
        contrast=per_trial("contrast"),
        spike_times_s=np.concatenate(spike_times) if spike_times else np.zeros(0),
        spike_offsets=np.concatenate([[0], np.cumsum([times.size for times in spike_times])]).astype(np.int64),
        experiment=experiment,
    )
