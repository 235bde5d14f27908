"""The tuning task: repeat-interleaved splits, a Poisson fit per neuron, the synthetic twin's ground truth, verify."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.task.spec import load_task
from tests.tasks.candidates import candidate_from, candidate_from_source

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks/tuning"
TWO_UNITS = ["m620r35", "m627r58"]  # the two best-driven V1 units: small and quick, still well constrained


def test_both_variants_load_and_split_by_interleaved_repeats():
    for name in ("task.yaml", "synthetic.yaml"):
        task = load_task(TASK / name)
        assert task.function_name == "tuning" and task.file.verify == "verify.py:verify"
    splits = load_task(TASK / "task.yaml").load_splits(units=["m620r35"])
    trials = {name: int(split["mask"].sum()) for name, split in splits.items()}
    assert trials == {"train": 1056, "selection": 352, "test": 352}
    # every stimulus condition appears in every split: 6 / 2 / 2 of its 10 repeats
    for name, repeats in (("train", 6), ("selection", 2), ("test", 2)):
        conditions = splits[name]["condition"][0]
        assert np.all(np.bincount(conditions)[np.unique(conditions)] == repeats), name
    assert splits["train"]["direction_deg"].shape == (1, 1056, 9)
    assert np.all(splits["train"]["contrast"] >= 0) and np.all(np.isfinite(splits["train"]["direction_deg"]))


def test_synthetic_counts_are_deterministic_and_differ_from_the_real_ones():
    task = load_task(TASK / "synthetic.yaml")
    first, second = task.load_splits(units=TWO_UNITS), task.load_splits(units=TWO_UNITS)
    np.testing.assert_array_equal(first["train"]["spike_count"], second["train"]["spike_count"])
    real = load_task(TASK / "task.yaml").load_splits(units=TWO_UNITS)
    np.testing.assert_array_equal(first["train"]["contrast"], real["train"]["contrast"])
    assert not np.array_equal(first["train"]["spike_count"], real["train"]["spike_count"])


def test_bad_options_say_what_was_expected():
    task = load_task(TASK / "task.yaml")
    with pytest.raises(ValueError, match="expected 'real' or 'synthetic'"):
        task.load_splits(source="simulated")
    with pytest.raises(ValueError, match="not in the Goris"):
        task.load_splits(units=["m999x"])


def test_a_rate_of_the_wrong_shape_is_rejected_with_one_sentence():
    from tasks.tuning.score import score

    splits = load_task(TASK / "task.yaml").load_splits(units=["m620r35"])
    source = (TASK / "seed.py").read_text().replace("jnp.sum(contrast * response, axis=-1)", "contrast * response")
    candidate = candidate_from_source(source, TASK / "task.yaml")
    with pytest.raises(ValueError, match=r"tuning returned rate of shape \(1056, 9\); expected \(1056,\)"):
        score(candidate, splits["train"], splits["selection"])


@pytest.mark.slow
def test_ground_truth_beats_the_seed_and_its_parameters_are_recovered():
    """Tolerances on the two best-driven units: pref_deg +/- 5 deg, kappa, gain and baseline within 15 %."""
    from tasks.tuning.data import GROUND_TRUTH
    from tasks.tuning.score import score

    splits = load_task(TASK / "synthetic.yaml").load_splits(units=TWO_UNITS)
    seed = score(candidate_from(TASK / "seed.py"), splits["train"], splits["selection"], restarts=8)
    truth = score(candidate_from(TASK / "baselines/tuned_normalization.py"), splits["train"], splits["selection"], restarts=8)
    assert truth.score > seed.score + 0.5, (truth.score, seed.score)
    assert set(seed.timings) >= {"compile_s", "fit_s", "score_s"}  # the keys every task's score uses
    for unit in TWO_UNITS:
        fitted = truth.fitted_params[unit]
        assert abs(fitted["pref_deg"] - GROUND_TRUTH[unit]["pref_deg"]) <= 5.0, (unit, fitted)
        for name in ("kappa", "gain", "baseline"):
            assert abs(fitted[name] / GROUND_TRUTH[unit][name] - 1.0) <= 0.15, (unit, name, fitted[name])


@pytest.mark.slow
def test_negative_binomial_scoring_fits_a_dispersion_per_neuron():
    from tasks.tuning.score import score, score_negative_binomial

    splits = load_task(TASK / "task.yaml").load_splits(units=["m620r35"])
    seed = candidate_from(TASK / "seed.py")
    poisson = score(seed, splits["train"], splits["selection"], restarts=4)
    negative_binomial = score_negative_binomial(seed, splits["train"], splits["selection"], restarts=4)
    assert "noise_log_shape" in negative_binomial.fitted_params["m620r35"]
    # real counts are overdispersed relative to the seed's Poisson prediction, so the dispersion helps
    assert negative_binomial.score > poisson.score


@pytest.mark.slow
def test_verify_returns_recovery_and_well_formed_figures():
    task = load_task(TASK / "task.yaml")
    splits = task.load_splits(units=TWO_UNITS)
    verify = task.resolve_entry(task.file.verify, "verify").load()
    result = verify(candidate_from(TASK / "seed.py"), splits["train"], splits["selection"], n_sets=4, restarts=4,
                    posterior=True).record()
    assert set(result["recovery"]) == {"pref_deg", "kappa", "gain", "baseline"}
    # --posterior: each neuron's NUTS quantiles, grouped by unit like its fitted parameters, bracket the fit
    assert set(result["posterior"]) == set(result["fitted_params"]) == set(TWO_UNITS)
    quantiles = {(unit, name): q for unit, group in result["posterior"].items() for name, q in group.items()}
    assert set(quantiles) == {(unit, name) for unit, values in result["fitted_params"].items() for name in values}
    for low, median, high in quantiles.values():
        assert low <= median <= high
    brackets = [low < result["fitted_params"][unit][name] < high for (unit, name), (low, _, high) in quantiles.items()]
    assert sum(brackets) >= len(brackets) - 1, result["posterior"]  # a circular pref_deg may sit on the wrap
    assert all(len(pairs) == 4 for pairs in result["recovery_pairs"].values())
    assert result["recovery"]["gain"] > 0.8
    assert result["recovery_circular"] == ["pref_deg"]  # a direction: judged on the circle
    assert result["recovery"]["pref_deg"] > 0.8
    assert len(result["figures"]) == 3  # two tuning curves and the condition scatter
    for figure in result["figures"]:
        assert {"title", "xlabel", "ylabel", "series"} <= set(figure)
        for series in figure["series"]:
            assert series["kind"] in ("line", "scatter", "bar", "step") and series["role"] in ("data", "model")
            assert len(series["x"]) == len(series["y"]) > 0
            assert np.all(np.isfinite(series["y"]))
