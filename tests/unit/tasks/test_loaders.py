"""The loaders turn the upstream files of the mirror into arrays of the documented shapes, dtypes and ranges."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np
import pytest

from tasks.data import (
    MONKEY_NAMES,
    load_bbp_current_clamp,
    load_cavanagh_theta,
    load_goris2015,
    load_rlddm_sequences,
    load_roitman_rts,
)
from tasks.data.igor import read_ibw
from engine.task.datasets import DatasetError


def test_rlddm_sequences_are_padded_per_subject_and_pair(data_mirror: Path) -> None:
    data = load_rlddm_sequences()
    assert data.choices.shape == data.rewards.shape == data.rt_s.shape == data.mask.shape == (84, 120)
    assert data.choices.dtype == np.int64 and data.rewards.dtype == np.float64 and data.mask.dtype == bool
    assert data.mask.sum() == 5280 and np.array_equal(data.mask.sum(axis=1), data.n_trials)
    assert np.unique(data.subject_ids).size == 28 and data.n_trials.min() == 37
    assert set(np.unique(data.pairs).tolist()) == {0, 1, 2}
    assert set(np.unique(data.choices[data.mask]).tolist()) == {0, 1}
    assert set(np.unique(data.rewards[data.mask]).tolist()) == {0.0, 1.0}
    real_rt = data.rt_s[data.mask]
    assert real_rt.min() == pytest.approx(0.201) and real_rt.max() == pytest.approx(5.849)
    assert not data.choices[~data.mask].any() and not data.rt_s[~data.mask].any()
    # Trials within a sequence are in played order; the better symbol is chosen most in the easiest pair.
    for row in range(data.choices.shape[0]):
        assert np.all(np.diff(data.trial_numbers[row, : data.n_trials[row]]) > 0)
    better_rate = [data.choices[(data.pairs == pair)[:, None] & data.mask].mean() for pair in range(3)]
    assert better_rate[0] > better_rate[1] > better_rate[2] > 0.5


def test_rlddm_subset_keeps_the_first_subjects(data_mirror: Path) -> None:
    data = load_rlddm_sequences(subset=2)
    assert data.subject_ids.tolist() == [3, 3, 3, 4, 4, 4] and data.pairs.tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(DatasetError, match="subset = 29, but the dataset has only 28 subjects"):
        load_rlddm_sequences(subset=29)
    with pytest.raises(DatasetError, match="subset must be a positive number of subjects or None; got 0"):
        load_rlddm_sequences(subset=0)


def test_cavanagh_theta_trials(data_mirror: Path) -> None:
    data = load_cavanagh_theta()
    assert data.rt_s.shape == (3988,) and data.rt_s.dtype == np.float64
    assert np.unique(data.subject).tolist() == list(range(14))
    assert data.rt_s.min() == pytest.approx(0.402) and data.rt_s.max() == pytest.approx(4.84)
    assert data.dbs_on.sum() == 1969 and data.high_conflict.sum() == 1972
    assert np.array_equal(data.high_conflict, np.isin(data.stimulus, ["WW", "LL"]))
    assert set(np.unique(data.response).tolist()) == {0, 1}
    assert load_cavanagh_theta(subset=1).subject.tolist() == [0] * 298


def test_bbp_sweeps_have_voltage_current_and_step_timing(data_mirror: Path) -> None:
    sweeps = load_bbp_current_clamp()
    assert [(sweep.cell, sweep.sweep_number) for sweep in sweeps][::5] == [("B6", 181), ("B8", 145), ("B95", 107)]
    for sweep in sweeps:
        assert sweep.voltage_mV.shape == sweep.current_pA.shape == sweep.time_ms.shape == (12000,)
        assert sweep.voltage_mV.dtype == np.float64
        assert -100.0 < sweep.voltage_mV.min() and sweep.voltage_mV.max() < 60.0
        assert sweep.dt_ms == pytest.approx(0.25)
        assert (sweep.stimulus_onset_ms, sweep.stimulus_offset_ms) == (700.0, 2700.0)
        onset = int(sweep.stimulus_onset_ms / sweep.dt_ms)
        # The cell spikes during the step (0 mV crossings) and rests near -70 mV before it.
        assert sweep.voltage_mV[onset:].max() > 0.0
        assert -75.0 < np.median(sweep.voltage_mV[:onset]) < -65.0
    # Step sizes and holding currents of the upstream sweep table (SOURCE.md), in pA.
    step_pA = [round(sweep.step_amplitude_pA, 2) for sweep in sweeps]
    assert step_pA == [118.74, 174.99, 237.49, 296.86, 353.11, 93.75, 140.62, 184.37, 228.11, 274.99, 37.5]
    assert [round(sweep.holding_current_pA, 2) for sweep in sweeps[::5]] == [-12.5, -53.12, -31.25]
    assert [sweep.nominal_amplitude for sweep in sweeps[:5]] == [50.0, 75.0, 100.0, 125.0, 150.0]


def test_bbp_subset_and_agreement_with_the_converted_copy(data_mirror: Path) -> None:
    sweeps = load_bbp_current_clamp(subset=1)
    assert len(sweeps) == 1
    # bbp_rat_cortex_idrest.npz was converted from the same .ibw files with the igor2 package.
    converted = np.load(data_mirror / "bbp-rat-cortex-ccamp" / "bbp_rat_cortex_idrest.npz")
    assert np.array_equal(sweeps[0].voltage_mV, converted["B6_sweep181_V_mV"].astype(np.float64))
    assert np.array_equal(sweeps[0].current_pA, converted["B6_sweep181_I_pA"].astype(np.float64))


def test_igor_reader_reads_versions_2_and_5_and_rejects_other_files(data_mirror: Path, tmp_path: Path) -> None:
    folder = data_mirror / "bbp-rat-cortex-ccamp" / "raw_ibw"
    version5 = read_ibw(folder / "B6" / "B6_Ch3_IDRest_181.ibw")
    version2 = read_ibw(folder / "B95_Ch0_IDRest_107.ibw")
    assert (version5.version, version5.data_units, version5.name) == (5, "mV", "tempB6_IDRest_Ch3_181")
    assert (version2.version, version2.data_units, version2.name) == (2, "pA", "AA_IDRest_Ch0_107")
    assert version5.x_step == pytest.approx(0.00025) and version2.x_step == pytest.approx(0.00025)
    assert "PATTERN:IDRest" in version5.note and "PATTERN:IDRest" in version2.note
    not_a_wave = tmp_path / "x.ibw"
    not_a_wave.write_bytes(b"hello world")
    expected = "expected an Igor binary wave of version 2 or 5; the first two bytes are 6865"
    with pytest.raises(DatasetError, match=expected):
        read_ibw(not_a_wave)
    truncated = tmp_path / "t.ibw"
    truncated.write_bytes((folder / "B6" / "B6_Ch3_IDRest_181.ibw").read_bytes()[:4000])
    with pytest.raises(DatasetError, match="the header says 12000 points ending at byte 48384, but the file has 4000"):
        read_ibw(truncated)


def test_goris_spatial_frequency_experiment(data_mirror: Path) -> None:
    data = load_goris2015("sf")
    assert data.unit_names == ("m620r12", "m620r35", "m624l54", "m625r58", "m625r62", "m627r58")
    assert data.unit_areas == ("V2", "V1", "V1", "V1", "V1", "V1")
    assert np.bincount(data.unit).tolist() == [83, 45, 52, 57, 34, 85]
    assert data.direction_deg.shape == data.contrast.shape == (356, 9)
    assert data.spike_count.dtype == np.int64 and data.spike_count.min() >= 0
    assert data.is_blank.sum() == 62 and np.isnan(data.contrast[:, 1:]).all()
    assert np.all(data.contrast[~data.is_blank, 0] == 1.0)
    # m620r35 prefers 2.5 c/deg (mean 122.3 spikes) over 0.1 (11.8) and 10 c/deg (4.5).
    unit = data.unit == 1
    frequency = data.spatial_frequency_cpd[:, 0]
    means = {f: data.spike_count[unit & np.isclose(frequency, f)].mean() for f in (0.1, 2.51189, 10.0)}
    assert [round(value, 1) for value in means.values()] == [11.8, 122.3, 4.5]
    assert np.array_equal(np.diff(data.spike_offsets), data.spike_count)
    assert data.spike_times_s.min() >= 0.0 and data.spike_times_s.max() <= 1.01


def test_goris_mixture_experiment_matches_the_converted_trial_table(data_mirror: Path) -> None:
    data = load_goris2015("tp")
    assert data.unit.shape == (10242,) and data.direction_deg.shape == (10242, 9)
    assert data.is_blank.sum() == 930 and data.latency_ms.tolist() == [74.0, 65.0, 65.0, 78.0, 91.0, 71.0]
    assert np.nanmin(data.contrast) >= 0.0 and np.nanmax(data.contrast) <= 1.0
    assert np.nanmax(data.direction_deg) <= 360.0 and np.all(data.duration_s > 0.99)
    # goris2015_trials.csv.gz was converted from the same .mat files (one row per trial, sf rows first per unit).
    with gzip.open(data_mirror / "goris2015-v1" / "goris2015_trials.csv.gz", "rt") as stream:
        rows = [row for row in csv.DictReader(io.StringIO(stream.read())) if row["experiment"] == "tp"]
    assert [int(row["spikeCount"]) for row in rows] == data.spike_count.tolist()
    assert [row["cell"] for row in rows] == [data.unit_names[index] for index in data.unit]


def test_goris_subset_and_bad_experiment(data_mirror: Path) -> None:
    data = load_goris2015("tp", subset=1)
    assert data.unit_names == ("m620r12",) and data.spike_count.shape == (1760,)
    assert data.spike_offsets.shape == (1761,)
    with pytest.raises(DatasetError, match="experiment must be 'sf' or 'tp'; got 'ori'"):
        load_goris2015("ori")  # type: ignore[arg-type]


def test_roitman_trials(data_mirror: Path) -> None:
    data = load_roitman_rts()
    assert data.rt_ms.shape == (6149,) and data.rt_ms.dtype == np.float64
    assert np.bincount(data.monkey).tolist() == [0, 2615, 3534] and set(MONKEY_NAMES) == {1, 2}
    assert data.rt_ms.min() == 5.0 and data.rt_ms.max() == 1762.0 and data.rt_ms[0] == 355.0
    assert np.unique(data.coherence).tolist() == [0.0, 0.032, 0.064, 0.128, 0.256, 0.512]
    assert round(float(data.correct.mean()), 2) == 0.81
    assert set(np.unique(data.target_choice).tolist()) == {1, 2}
    # Accuracy rises with coherence.
    accuracy = [data.correct[data.coherence == c].mean() for c in np.unique(data.coherence)]
    assert accuracy[-1] > 0.95 and np.all(np.diff(accuracy[1:]) > 0)
    small = load_roitman_rts(subset=100)
    assert np.bincount(small.monkey).tolist() == [0, 100, 100]
