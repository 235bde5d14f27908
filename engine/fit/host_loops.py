"""Optimizer loops run on the host in numpy, around one compiled evaluation of all restarts.

Only the model's batched value-and-gradient is compiled (once per candidate); the optimizer's own arithmetic on
(groups, restarts, n_params) arrays is plain numpy, so it costs no compile time. Each iteration makes one call
to the compiled program, which evaluates every restart in parallel. On CPU this compiles several times faster
than putting the loop inside the program (see `engine.fit.loops`), at a cost of tens of microseconds per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from engine.fit.errors import FitError

__all__ = ["HostOutcome", "run_host_loop"]

ARMIJO_SLOPE = 1e-4  # sufficient decrease: f(z + t d) <= f(z) + ARMIJO_SLOPE * t * (g . d)
MAX_BACKTRACKS = 30  # a restart that cannot decrease after this many step shrinks has converged
LBFGS_MEMORY = 10
ADAM_BETAS = (0.9, 0.999)

Evaluate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""z (G, R, n) -> loss (G, R), grad (G, R, n), both numpy."""


class HostOutcome(NamedTuple):
    """Per restart: best loss (G, R), finite (G, R), converged (G, R), best z (G, R, n); iterations run."""

    loss: np.ndarray
    ok: np.ndarray
    converged: np.ndarray
    z: np.ndarray
    steps: int


def run_host_loop(optimizer: str, evaluate: Evaluate, z0: np.ndarray, *, max_steps: int, learning_rate: float,
                  tol: float) -> HostOutcome:
    """Minimizes from each start in z0 (G, R, n); see `engine.fit.fit_maximum_likelihood` for the rules."""
    if optimizer == "lbfgs":
        return _lbfgs(evaluate, z0, max_steps, tol)
    if optimizer in ("adam", "adabelief"):
        return _first_order(evaluate, z0, max_steps, learning_rate, tol, belief=optimizer == "adabelief")
    raise FitError(f"optimizer = {optimizer!r} has no host loop; expected adam, adabelief or lbfgs.")


def _small_change(loss, previous, tol):
    with np.errstate(invalid="ignore"):
        return np.abs(loss - previous) <= tol * np.maximum(np.abs(loss), 1.0)


def _first_order(evaluate, z0, max_steps, learning_rate, tol, *, belief):
    """Adam (or AdaBelief) steps; a restart whose loss or gradient turns non-finite is dropped."""
    beta1, beta2 = ADAM_BETAS
    z = z0.astype(np.float64)
    batch = z.shape[:2]
    first_moment = np.zeros_like(z)
    second_moment = np.zeros_like(z)
    previous = np.full(batch, np.inf)
    best_loss = np.full(batch, np.inf)
    best_z = z.copy()
    active = np.ones(batch, bool)
    ok = np.ones(batch, bool)
    converged = np.zeros(batch, bool)
    step = 0
    while step < max_steps and active.any():
        loss, grad = evaluate(z)
        finite = np.isfinite(loss) & np.isfinite(grad).all(axis=-1)
        ok &= finite | ~active
        keep = active & finite
        small = keep & _small_change(loss, previous, tol)
        improved = keep & (loss < best_loss)
        best_loss = np.where(improved, loss, best_loss)
        best_z = np.where(improved[..., None], z, best_z)
        previous = np.where(keep, loss, previous)
        converged |= small
        active = keep & ~small

        step += 1
        grad = np.where(keep[..., None], grad, 0.0)
        new_first = beta1 * first_moment + (1 - beta1) * grad
        if belief:  # AdaBelief: second moment of the gradient's deviation from its running mean
            new_second = beta2 * second_moment + (1 - beta2) * (grad - new_first) ** 2 + 1e-16
            denominator = np.sqrt(new_second / (1 - beta2**step)) + 1e-16
        else:
            new_second = beta2 * second_moment + (1 - beta2) * grad**2
            denominator = np.sqrt(new_second / (1 - beta2**step)) + 1e-8
        move = active[..., None]
        first_moment = np.where(move, new_first, first_moment)
        second_moment = np.where(move, new_second, second_moment)
        z = np.where(move, z - learning_rate * (new_first / (1 - beta1**step)) / denominator, z)

    # the last update was never evaluated: score it and keep it when better
    if (ok & ~converged).any():
        final_loss, _ = evaluate(z)
        better = ok & np.isfinite(final_loss) & (final_loss < best_loss)
        best_loss = np.where(better, final_loss, best_loss)
        best_z = np.where(better[..., None], z, best_z)
    return HostOutcome(best_loss, ok & np.isfinite(best_loss), converged, best_z, step)


def _lbfgs(evaluate, z0, max_steps, tol):
    """L-BFGS with a backtracking Armijo linesearch; every iteration evaluates each restart once.

    A restart whose trial point satisfies the Armijo rule accepts it and updates its curvature memory; otherwise
    its step shrinks (quadratic interpolation, clipped to [0.1 t, 0.5 t]). Restarts move through their
    linesearches independently. A non-finite trial shrinks the step; a restart is dropped only when its starting
    point is non-finite.
    """
    z = z0.astype(np.float64)
    batch, n = z.shape[:2], z.shape[-1]
    memory_s = np.zeros(batch + (LBFGS_MEMORY, n))
    memory_y = np.zeros(batch + (LBFGS_MEMORY, n))
    memory_count = np.zeros(batch, np.int64)
    loss = np.full(batch, np.inf)
    grad = np.zeros_like(z)
    direction = np.zeros_like(z)
    t = np.zeros(batch)
    backtracks = np.zeros(batch, np.int64)
    active = np.ones(batch, bool)
    ok = np.ones(batch, bool)
    converged = np.zeros(batch, bool)
    started = np.zeros(batch, bool)
    step = 0
    while step < max_steps and active.any():
        trial = z + t[..., None] * direction
        trial_loss, trial_grad = evaluate(trial)
        step += 1
        finite = np.isfinite(trial_loss) & np.isfinite(trial_grad).all(axis=-1)
        ok &= started | finite | ~active
        slope = np.einsum("grn,grn->gr", grad, direction)
        with np.errstate(invalid="ignore", over="ignore"):
            armijo = trial_loss <= loss + ARMIJO_SLOPE * t * slope
        accept = active & finite & (~started | armijo)
        small = accept & started & _small_change(trial_loss, loss, tol)

        # rejected restarts: shrink the step by quadratic interpolation along the line
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            curvature = trial_loss - loss - slope * t
            t_quadratic = -slope * t**2 / (2.0 * curvature)
        usable = finite & (curvature > 0) & np.isfinite(t_quadratic)
        t_shrunk = np.where(usable, np.clip(np.nan_to_num(t_quadratic), 0.1 * t, 0.5 * t), 0.1 * t)
        backtracks = np.where(accept, 0, backtracks + active)
        stuck = active & ~accept & (backtracks > MAX_BACKTRACKS)

        # accepted restarts: remember the curvature pair, then take the new L-BFGS direction
        s = trial - z
        y = trial_grad - grad
        sy = np.einsum("grn,grn->gr", s, y)
        remember = accept & started & (sy > 1e-10 * np.linalg.norm(s, axis=-1) * np.linalg.norm(y, axis=-1))
        memory_s = np.where(remember[..., None, None], np.roll(memory_s, -1, axis=-2), memory_s)
        memory_y = np.where(remember[..., None, None], np.roll(memory_y, -1, axis=-2), memory_y)
        memory_s[..., -1, :] = np.where(remember[..., None], s, memory_s[..., -1, :])
        memory_y[..., -1, :] = np.where(remember[..., None], y, memory_y[..., -1, :])
        memory_count = np.where(remember, np.minimum(memory_count + 1, LBFGS_MEMORY), memory_count)

        new_grad = np.where(accept[..., None], np.nan_to_num(trial_grad), grad)
        new_direction = -_two_loop(new_grad, memory_s, memory_y, memory_count)
        not_descent = np.einsum("grn,grn->gr", new_grad, new_direction) >= 0
        if (accept & not_descent).any():  # curvature memory went bad: restart it from steepest descent
            memory_count = np.where(accept & not_descent, 0, memory_count)
            new_direction = -_two_loop(new_grad, memory_s, memory_y, memory_count)

        z = np.where(accept[..., None], trial, z)
        loss = np.where(accept, trial_loss, loss)
        grad = new_grad
        direction = np.where(accept[..., None], new_direction, direction)
        t = np.where(accept, 1.0, t_shrunk)
        started |= accept
        converged |= small | stuck
        active &= ok & ~small & ~stuck
    return HostOutcome(loss, ok & np.isfinite(loss), converged, z, step)


def _two_loop(grad, memory_s, memory_y, memory_count):
    """Returns H g per restart by the L-BFGS two-loop recursion (Nocedal & Wright, Algorithm 7.4).

    Memory slot i of a restart is in use when i >= LBFGS_MEMORY - memory_count. With no memory, H is the
    identity scaled to a step of length at most 1.
    """
    slots = np.arange(LBFGS_MEMORY)
    in_use = slots >= (LBFGS_MEMORY - memory_count)[..., None]  # (G, R, m)
    sy = np.einsum("grmn,grmn->grm", memory_s, memory_y)
    rho = np.where(in_use, 1.0 / np.where(in_use, sy, 1.0), 0.0)
    q = grad.copy()
    alphas = np.zeros(in_use.shape)
    for i in range(LBFGS_MEMORY - 1, -1, -1):
        alphas[..., i] = rho[..., i] * np.einsum("grn,grn->gr", memory_s[..., i, :], q)
        q -= alphas[..., i, None] * memory_y[..., i, :]
    newest_y = memory_y[..., -1, :]
    yy = np.einsum("grn,grn->gr", newest_y, newest_y)
    gamma_memory = sy[..., -1] / np.where(yy > 0, yy, 1.0)
    gamma_none = np.minimum(1.0, 1.0 / np.maximum(np.linalg.norm(grad, axis=-1), 1e-12))
    gamma = np.where(memory_count > 0, gamma_memory, gamma_none)
    r = gamma[..., None] * q
    for i in range(LBFGS_MEMORY):
        beta = rho[..., i] * np.einsum("grn,grn->gr", memory_y[..., i, :], r)
        r += memory_s[..., i, :] * (alphas[..., i] - beta)[..., None]
    return r
