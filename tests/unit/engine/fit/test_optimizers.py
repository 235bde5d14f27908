"""The host L-BFGS loop evaluating only the restarts still moving (`run_host_loop(..., active_only=True)`)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.fit.errors import FitError
from engine.fit.optimizers import run_host_loop

SCALES = np.array([[1.0, 30.0, 0.2], [5.0, 1.0, 100.0]])  # (G, R): restarts that converge after different steps


def quadratic(z):
    """A badly scaled bowl per restart: sum_i scale * i * (z_i - 1)^2 / 2, minimum at z = 1."""
    curvature = SCALES[..., None] * np.arange(1, z.shape[-1] + 1)
    return np.sum(curvature * (z - 1.0) ** 2, axis=-1) / 2, curvature * (z - 1.0)


def test_evaluating_only_the_moving_restarts_gives_the_same_fit():
    z0 = np.random.default_rng(0).normal(size=SCALES.shape + (4,))
    everything = run_host_loop("lbfgs", quadratic, z0, max_steps=200, learning_rate=0.0, tol=1e-12)
    masks = []

    def evaluate(z, active):
        masks.append(active)
        loss, grad = quadratic(z)
        return np.where(active, loss, np.nan), np.where(active[..., None], grad, np.nan)  # stopped rows: garbage

    moving = run_host_loop("lbfgs", evaluate, z0, max_steps=200, learning_rate=0.0, tol=1e-12, active_only=True)
    np.testing.assert_array_equal(moving.z, everything.z)
    np.testing.assert_array_equal(moving.loss, everything.loss)
    assert np.all(moving.ok) and np.all(moving.converged) and moving.steps == everything.steps
    np.testing.assert_allclose(moving.z, 1.0, atol=1e-5)
    counts = [int(mask.sum()) for mask in masks]
    assert counts[0] == SCALES.size and counts == sorted(counts, reverse=True) and counts[-1] < SCALES.size


def test_active_only_is_refused_for_the_first_order_optimizers():
    with pytest.raises(FitError, match="active_only is implemented for L-BFGS"):
        run_host_loop("adam", quadratic, np.zeros(SCALES.shape + (2,)), max_steps=5, learning_rate=0.1, tol=1e-6,
                      active_only=True)
