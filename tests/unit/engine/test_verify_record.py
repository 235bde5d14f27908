"""What `discover verify` and the report say about parameter recovery: failed sets, the line, the figure."""

import pytest

from engine.figures import validate_figure
from engine.verify import recovery_failures, recovery_figure, recovery_summary


def test_no_failed_sets_says_nothing():
    assert recovery_failures({"recovery": {"alpha": 0.9}, "recovery_pairs": {"alpha": [[0.1, 0.1]] * 6}}) == ""
    assert recovery_failures({}) == ""  # records stored before failed sets were recorded


def test_failed_sets_are_counted_next_to_the_ones_used():
    record = {"recovery_failed_sets": [0, 2], "recovery_pairs": {"alpha": [[0.1, 0.1]] * 4}}
    assert recovery_failures(record) == (
        "2 of 6 simulated parameter sets could not be refitted (no restart gave a finite likelihood; sets [0, 2]); "
        "the correlations use the other 4."
    )
    record = {"recovery_failed_sets": [0, 2, 3, 5], "recovery_pairs": {"alpha": [[0.1, 0.1]] * 2}}
    assert recovery_failures(record).endswith("the 2 left are too few for a correlation.")


def test_the_recovery_line_marks_circular_correlations():
    record = {"recovery": {"kappa": 0.96, "pref_deg": 0.91}, "recovery_circular": ["pref_deg"]}
    assert recovery_summary(record) == (
        "parameter recovery (Pearson r, generating vs refitted): kappa=0.96, pref_deg=0.91 (circular r)"
    )
    assert recovery_summary({"recovery": {"alpha": 0.5}}).endswith("alpha=0.50")  # records from before angles
    assert recovery_summary({}) == ""


def test_the_recovery_figure_puts_every_parameter_on_one_standardized_scale():
    record = {
        "recovery": {"alpha": 1.0, "beta": float("nan"), "gain": 0.2},
        "recovery_pairs": {
            "alpha": [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]],
            "beta": [[5.0, 4.0], [5.0, 6.0], [5.0, 5.0]],  # never varied: nothing to standardize by
            "gain": [[100.0, 150.0], [200.0, 120.0], [300.0, 180.0]],
        },
    }
    figure = recovery_figure(record)
    assert not validate_figure(figure)
    labels = [series["label"] for series in figure["series"]]
    assert labels == ["alpha (r 1.00)", "gain (r 0.20)", "recovered = generating"]
    alpha = figure["series"][0]
    assert alpha["x"] == pytest.approx(alpha["y"]) and alpha["x"][0] == pytest.approx(-1.2247, abs=1e-4)
    assert figure["series"][1]["y"] == pytest.approx([-0.6124, -0.9798, -0.2449], abs=1e-4)
    assert recovery_figure({"recovery_pairs": {}}) is None and recovery_figure({}) is None
