"""A gain fixed at 1 hands its range to the parameter its refit pushed to a bound (`engine/verification/simplify.py`)."""

from __future__ import annotations

from engine.verification.rewrite import declared_parameters
from engine.verification.simplify import _proposals, _range_moved
from sandbox.results import Outcome, RunResult

# gain_2 and gain multiply the same response; fitted, their product exceeded gain's own bound in one neuron
PRODUCT = '''import jax.numpy as jnp


def tuning(params, direction_deg, contrast):
    PARAMS = {"gain": (0.0, 300.0), "gain_2": (0.0, 5.0), "baseline": (0.0, 30.0)}
    response = params["gain_2"] * jnp.cos(jnp.deg2rad(direction_deg))
    return params["baseline"] + params["gain"] * jnp.sum(contrast * response, axis=-1)
'''


def fix_gain_2_at_1():
    (rewrite,) = [r for r in _proposals(PRODUCT, "tuning") if r.description == "fix gain_2 at 1"]
    return rewrite


def test_fixing_a_gain_at_1_widens_the_bound_its_partner_reached():
    rewrite = fix_gain_2_at_1()
    refit = RunResult(1, Outcome.OK, {"score": -3.0},
                      {"fitted_params": {"n1": {"gain": 300.0, "baseline": 2.0}, "n2": {"gain": 80.0}}})
    moved = _range_moved(rewrite, refit, set(), "tuning")
    assert moved is not None and "params['gain_2']" not in moved.source
    assert declared_parameters(moved.source, "tuning") == {"gain": (0.0, 1500.0), "baseline": (0.0, 30.0)}
    assert moved.description == "fix gain_2 at 1, gain taking over its range (upper bound x 5)"


def test_nothing_is_widened_when_no_bound_was_reached_or_was_reached_before():
    rewrite = fix_gain_2_at_1()
    inside = RunResult(1, Outcome.OK, {"score": -3.0}, {"fitted_params": {"n1": {"gain": 210.0, "baseline": 2.0}}})
    assert _range_moved(rewrite, inside, set(), "tuning") is None
    at_bound = RunResult(1, Outcome.OK, {"score": -3.0}, {"fitted_params": {"n1": {"gain": 300.0}}})
    assert _range_moved(rewrite, at_bound, {"gain"}, "tuning") is None  # the original fit was there already
    (zero,) = [r for r in _proposals(PRODUCT, "tuning") if r.description == "fix gain_2 at 0"]
    assert _range_moved(zero, at_bound, set(), "tuning") is None  # a knock-out, not a gain fixed at 1
