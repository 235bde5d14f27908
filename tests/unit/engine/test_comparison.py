"""Paired differences over held-out units: bootstrap intervals, their coverage, AIC and BIC."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.verification.comparison import information_criteria, paired_difference, unit_values


def test_the_paired_bootstrap_interval_covers_the_true_difference_at_its_nominal_rate():
    # Two models scored on the same 30 sessions: the sessions differ a lot in difficulty (shared by both models),
    # the models differ by a true 0.02 nats per trial with session-to-session noise. Percentile intervals of a
    # mean over 30 units cover a little under 95 %; 400 simulated studies give the rate within about +/-2 %.
    rng = np.random.default_rng(7)
    true_difference, covered, studies = 0.02, 0, 400
    for study in range(studies):
        difficulty = rng.normal(-0.6, 0.2, size=30)
        b = difficulty
        a = difficulty + true_difference + rng.standard_t(5, size=30) * 0.03
        units = [f"session_{i}" for i in range(30)]
        result = paired_difference(dict(zip(units, a)), dict(zip(units, b)), samples=1000, seed=study)
        covered += result.low <= true_difference <= result.high
    assert 0.90 <= covered / studies <= 0.98


def test_pairing_removes_what_the_units_share():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0.0, 1.0, size=40)
    a = {f"u{i}": value + 0.05 for i, value in enumerate(difficulty)}
    b = {f"u{i}": value for i, value in enumerate(difficulty)}
    result = paired_difference(a, b)
    assert result.mean == pytest.approx(0.05)
    assert result.high - result.low < 1e-9  # the same shift in every unit: no spread left
    assert (result.wins, result.n) == (40, 40)


def test_only_shared_units_are_paired_and_fewer_than_two_give_none():
    assert paired_difference({"a": 1.0}, {"a": 0.0, "b": 2.0}) is None
    result = paired_difference({"a": 1.0, "b": 2.0, "c": 9.0}, {"a": 0.0, "b": 0.0})
    assert result.n == 2 and result.mean == pytest.approx(1.5)


def test_unit_values_take_the_log_of_probabilities_per_trial():
    values = unit_values({"s0": math.exp(-0.5), "s1": float("nan")}, "likelihood_per_trial")
    assert values == {"s0": pytest.approx(-0.5)}
    assert unit_values({"n1": -3.2}, "loglik_per_trial") == {"n1": -3.2}


def test_information_criteria():
    criteria = information_criteria(-100.0, 3, 200.0)
    assert criteria["aic"] == pytest.approx(206.0)
    assert criteria["bic"] == pytest.approx(3 * math.log(200.0) + 200.0)
    assert information_criteria(None, 3, 200.0) is None
