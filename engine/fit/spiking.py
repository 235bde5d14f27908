"""Fitting threshold-and-reset simulators (spiking neurons) by gradient descent through the simulation.

A spiking model is the right-hand side of an ODE with an event: `rhs(params, state, drive) -> (dstate_dt,
v_peak, reset)`, integrated with Euler steps; when the voltage (state[0]) reaches v_peak, a spike is recorded and
the state is replaced by `reset` (computed from the state before the step). `simulate_spiking` is that simulator,
the one a task scores with. Its voltage is a discontinuous function of the parameters wherever a spike appears,
vanishes or moves by a step, so the fit does not differentiate the free-running simulation. `fit_spiking` works in
two stages and keeps, per group, whatever scores best by the task's own (exact, non-differentiable) score:

1. **Spike-forced fit** (multiple shooting between the recorded spikes). The model is reset at the *recorded*
   spike times instead of its own, so each inter-spike interval is a shooting segment that starts from the
   model's own reset, and the simulated voltage is a smooth function of the parameters (between the recorded
   spikes the voltage is held at or below v_peak). The loss (`forced_loss`): the subthreshold voltage error
   (recorded spikes and their surroundings left out), a robust squared error between each recorded spike time and
   the model's own first crossing in that segment (`spike_time_errors`, interpolated within the step), and a small
   term for recorded spikes the model's voltage does not reach. L-BFGS from `restarts` random starts per group,
   the restarts taking the spike terms' weights from a ladder in turn (a model that cannot match both voltage and
   spike times is fitted several ways, and the score chooses), all groups and restarts batched in one compiled
   program (the model's value and reverse-mode gradient; the optimizer's arithmetic runs on the host,
   `engine.fit.optimizers`). Each step evaluates only the restarts still moving, FORCED_CHUNK per group at a time:
   on the neuron task's twin this cut stage 1 by about 30 %.
   **Stage 1b, scans.** L-BFGS stops where the loss is flat or its valley is narrow: a restart with the
   subthreshold parameters right and a spike threshold far off sits on a plateau of the spike terms. From each
   group's best `scan_starts` restarts (by the score), `scan_rounds` rounds of a coordinate scan of the forced loss
   (each parameter in turn over a grid of its whole unconstrained range and a finer one around its value, the others
   held; a move where the loss is lower) followed by `scan_steps` more L-BFGS steps. On the neuron task's twin
   (AdEx, fit seeds 0-4) this raised the held-out score's mean from 0.33 to 0.58 and cut its s.d. from 0.52 to
   0.07, for about a third more fitting time (tasks/neuron/README.md).
2. **Local search of the score.** Spike times over seconds of simulation are more sensitive to the parameters
   than the stage-1 loss resolves, and a model that cannot match both voltage and spikes should trade one for the
   other as the score does; short cross-entropy searches of the task's score around each group's best
   `local_starts` results of stages 1 and 1b, a narrow and a broad one (all batched in one compiled program), do
   both.

Every stage-1 restart, scanned start and local search is scored with `score(params, group)`, and each group keeps
its best.

    result = fit_spiking(membrane, spec, train_cells, score=training_score, dt_ms=0.5,
                         voltage_limits_mV=(-150.0, 100.0), exclude_ms=(2.0, 8.0), n_state=4)

`data` holds, per group (leading axis) and sweep (second axis): "current_pA" (n_steps,) the drive of each step,
"v_start_mV" the initial voltage (the other state variables start at 0), "voltage_mV" (n_steps,) the recorded
voltage at the end of each step and "spikes" (n_steps,) 1.0 in the steps with a recorded spike. Deterministic
given `seed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from engine.fit.errors import FitError
from engine.fit.optimizers import run_host_loop
from engine.fit.params import ParamSpec

__all__ = ["SpikingFitResult", "fit_spiking", "forced_loss", "simulate_spiking", "spike_time_errors", "window_sum"]

SpikingRHS = Callable[[Mapping[str, jax.Array], jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]
"""(params, state (n_state,), drive scalar) -> (dstate_dt (n_state,) per ms, v_peak scalar, reset (n_state,))."""

INIT_HALF_WIDTH = 2.0  # restarts start uniformly in [-2, 2] in unconstrained space, as the likelihood fitters do
# A recorded spike the spike-forced model misses by more than this costs no more: a model whose own spike comes a
# few ms after the recorded one (from a slightly different initial state, say) is not pulled far off by it.
MISSED_SPIKE_CAP_MV = 10.0
SPIKE_TIME_CAP_MS = 10.0  # likewise for the time between a recorded spike and the model's own
MISSED_SPIKE_RATIO = 0.02  # the missed-spike term's weight relative to the spike-time term's
SPIKE_TIME_SCALE_MS = 1.0  # spike-time errors count as their square up to about this, then logarithmically
# Stage 1 evaluates its restarts this many per group at a time, only those still moving: on the neuron task's twin
# (64 restarts, 150 steps) 59 % of restart-steps are still moving, and a chunk of 16 costs the same per restart as
# all 64 at once. A restart's float32 rounding depends on its place in the compiled batch, so the fits are not the
# same bits as with the whole batch (the neuron task's version 6).
FORCED_CHUNK = 16


@dataclass(frozen=True, slots=True)
class SpikingFitResult:
    """The best parameters per group, by the task's score.

    Attributes:
        params: name -> (n_groups,) constrained values.
        score: (n_groups,) the task's score at those values (higher is better).
        stage: (n_groups,) "forced", "scan" or "local": the stage whose result won.
        restarts_ok: (n_groups,) restarts of stage 1 with a finite loss.
        at_bounds: per group, names of parameters within 1e-3 * (high - low) of a bound.
        timings: {"compile_s", "fit_s"} wall seconds, and the parts of fit_s: "forced_s", "select_s", "scan_s",
            "local_s".
    """

    params: dict[str, np.ndarray]
    score: np.ndarray
    stage: tuple[str, ...]
    restarts_ok: np.ndarray
    at_bounds: tuple[tuple[str, ...], ...]
    timings: dict[str, float]


def window_sum(x: jax.Array, back: int, ahead: int) -> jax.Array:
    """Returns y (n,) with y[t] = sum of x[t - back .. t + ahead] (x zero outside 0 .. n - 1)."""
    kernel = jnp.ones(back + ahead + 1, x.dtype)
    full = jnp.convolve(x, kernel, mode="full")  # full[m] = sum of x[m - back - ahead .. m]
    return full[ahead : ahead + x.shape[0]]


def simulate_spiking(rhs: SpikingRHS, params: Mapping[str, jax.Array], drive: jax.Array, start: jax.Array, *,
                     dt_ms: float, voltage_limits_mV: tuple[float, float],
                     forced_spikes: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Euler-integrates a threshold-and-reset model over one sweep.

    Each step: proposed = state + dt_ms * dstate_dt; a spike when proposed[0] >= v_peak (or is not finite), and
    then the state becomes `reset`; a non-finite state variable becomes 0 and the voltage is kept within
    voltage_limits_mV, so that a diverging model stays finite.

    Args:
        drive: (n_steps,) the input during each step (e.g. injected current, pA).
        start: (n_state,) the initial state.
        forced_spikes: (n_steps,) if given, the state is reset where this is > 0 instead of where the model
            reaches v_peak, and between those steps the voltage is held at or below v_peak (spike-forced
            simulation, a smooth function of the parameters).

    Returns:
        voltage_mV: (n_steps,) the voltage at the end of each step (after any reset).
        spikes: (n_steps,) 1.0 in the steps where the model spiked (free) or was reset (forced).
        margin_mV: (n_steps,) how far above v_peak each step's voltage got before any reset (negative: below),
            clipped to the voltage limits' span.
    """
    low, high = voltage_limits_mV
    forced = forced_spikes is not None
    inputs = (drive, forced_spikes if forced else jnp.zeros_like(drive))

    def step(state, inputs):
        current, forced_spike = inputs
        dstate_dt, v_peak, reset = rhs(params, state, current)
        proposed = state + dt_ms * dstate_dt.astype(state.dtype)
        reset = reset.astype(state.dtype)
        if forced:
            spike = forced_spike > 0
            held = proposed.at[0].set(jnp.minimum(proposed[0], v_peak))
            new = jnp.where(spike, reset, held)
            spike_value = spike.astype(state.dtype)
        else:
            spike = (proposed[0] >= v_peak) | ~jnp.isfinite(proposed[0])
            new = jnp.where(spike, reset, proposed)
            spike_value = spike.astype(state.dtype)
        new = jnp.where(jnp.isfinite(new), new, 0.0)
        new = new.at[0].set(jnp.clip(new[0], low, high))
        margin = jnp.where(jnp.isfinite(proposed[0]), proposed[0] - v_peak, high - low)
        return new, (new[0], spike_value, jnp.clip(margin, low - high, high - low))

    _, (voltage, spikes, margin) = jax.lax.scan(step, start, inputs)
    return voltage, spikes, margin


def _start_state(v_start: jax.Array, n_state: int) -> jax.Array:
    return jnp.zeros(n_state, jnp.float32).at[0].set(v_start)


def _kept_steps(spikes: jax.Array, dt_ms: float, exclude_ms: tuple[float, float]) -> jax.Array:
    """Returns 1.0 for the steps outside exclude_ms[0] before to exclude_ms[1] after each recorded spike."""
    before, after = (int(round(ms / dt_ms)) for ms in exclude_ms)
    # step t is left out when a recorded spike s has s - before <= t <= s + after, i.e. s in [t - after, t + before]
    return (window_sum(spikes, after, before) <= 0).astype(jnp.float32)


def _mean_squared_error(voltage, data_voltage, keep):
    return jnp.sum(keep * (voltage - data_voltage) ** 2) / jnp.maximum(jnp.sum(keep), 1.0)


def spike_time_errors(margin: jax.Array, forced_spikes: jax.Array, *, cap_steps: float) -> jax.Array:
    """Returns, per step, how many steps the spike-forced model's own spike came after the recorded spike of that
    step (negative: before it; 0 in steps without a recorded spike), capped at +/- cap_steps.

    Within each inter-spike segment the model's own spike is the first step whose margin (voltage minus v_peak,
    `simulate_spiking`) is >= 0, placed inside that step by linear interpolation of the margin, so the time is a
    smooth function of the parameters. The recorded spike of step t crossed somewhere between t - 1 and t: a model
    that crosses within that step has no error (no bias from where in the step the interpolation puts it), one
    that crosses before t - 1 is early by the difference, and one that has not crossed by the end of step t is late
    by the time its margin would take to reach 0 at the last step's rate of rise.

    Args:
        margin: (n_steps,) from a spike-forced `simulate_spiking`.
        forced_spikes: (n_steps,) the recorded spikes the simulation was reset at.
    """
    far = jnp.asarray(cap_steps, margin.dtype)

    def step(carry, inputs):
        crossed, crossing_time, previous = carry
        index, now, recorded = inputs
        crossing_now = ~crossed & (now >= 0)
        rise = now - previous
        fraction = jnp.clip(-previous / jnp.where(crossing_now & (rise > 0), rise, 1.0), 0.0, 1.0)
        crossing_time = jnp.where(crossing_now, index - 1.0 + fraction, crossing_time)
        crossed = crossed | crossing_now
        lateness = -now / jnp.maximum(rise, 1e-3)  # steps until the margin reaches 0 at this rate
        # the recorded spike crossed somewhere in step `index`, i.e. between index - 1 and index
        early = jnp.minimum(crossing_time - (index - 1.0), 0.0)
        error = jnp.where(crossed, early, jnp.minimum(lateness, far))
        error = jnp.where(recorded > 0, jnp.clip(error, -far, far), 0.0)
        # after a recorded spike the model is reset: a new segment, whose first step rises from far below
        reset = recorded > 0
        carry = (crossed & ~reset, crossing_time, jnp.where(reset, -1e3, now))
        return carry, error

    index = jnp.arange(margin.shape[0], dtype=margin.dtype)
    start = (jnp.asarray(False), jnp.zeros((), margin.dtype), jnp.asarray(-1e3, margin.dtype))
    return jax.lax.scan(step, start, (index, margin, forced_spikes))[1]


def forced_loss(rhs: SpikingRHS, params: Mapping[str, jax.Array], group: Mapping[str, jax.Array], *, n_state: int,
                dt_ms: float, voltage_limits_mV: tuple[float, float], exclude_ms: tuple[float, float],
                missed_spike_weight: float, spike_time_weight: float) -> jax.Array:
    """Stage 1's loss of one group, averaged over sweeps: per sweep, the spike-forced simulation's mean squared
    subthreshold error (mV^2), plus spike_time_weight x the mean over recorded spikes of the squared time (ms^2)
    between each and the model's own spike in that segment (`spike_time_errors`, capped at SPIKE_TIME_CAP_MS),
    plus missed_spike_weight x the mean over recorded spikes of (v_peak - v)^2 where the model's voltage did not
    reach v_peak (v_peak - v capped at MISSED_SPIKE_CAP_MV; this term has a slope where the time error, capped,
    has none, e.g. for a threshold far above the voltage)."""

    def one(current, v_start, voltage, spikes):
        model_voltage, _, margin = simulate_spiking(rhs, params, current, _start_state(v_start, n_state),
                                                    dt_ms=dt_ms, voltage_limits_mV=voltage_limits_mV,
                                                    forced_spikes=spikes)
        error = _mean_squared_error(model_voltage, voltage, _kept_steps(spikes, dt_ms, exclude_ms))
        n_spikes = jnp.maximum(jnp.sum(spikes), 1.0)
        shortfall = jnp.minimum(-jnp.minimum(margin, 0.0), MISSED_SPIKE_CAP_MV)
        missed = jnp.sum(spikes * shortfall**2) / n_spikes
        timing = spike_time_errors(margin, spikes, cap_steps=SPIKE_TIME_CAP_MS / dt_ms) * dt_ms
        # robust (Cauchy) in the time error: a few spikes far off (a first spike from a different initial state)
        # must not outweigh the rest
        robust = SPIKE_TIME_SCALE_MS**2 * jnp.log1p((timing / SPIKE_TIME_SCALE_MS) ** 2)
        return error + missed_spike_weight * missed + spike_time_weight * jnp.sum(robust) / n_spikes

    return jnp.mean(jax.vmap(one)(group["current_pA"], group["v_start_mV"], group["voltage_mV"], group["spikes"]))


def _value_and_grad(loss: Callable, spec: ParamSpec, *, reverse: bool = True) -> Callable:
    """Returns (z (n,), group) -> (loss, grad (n,)) of loss(spec.constrain(z), group), in reverse mode: on the neuron
    task's twin (exported candidates, chunks of 16 restarts, both cells) it cost 4.1 ms per restart against 6.8 in
    forward mode (`jax.jacfwd`, as until version 6) for AdEx (9 parameters) and 4.0 against 6.0 for the LIF seed (6),
    with gradients equal to 4e-6 (relative). With reverse=False, forward mode: for a model that has no reverse
    derivative (an exported candidate with a lax.while_loop, say)."""

    def objective(z, group):
        return loss(spec.constrain(z), group)

    if reverse:
        return jax.value_and_grad(objective)

    def value_and_grad(z, group):
        grad, value = jax.jacfwd(lambda x: (objective(x, group),) * 2, has_aux=True)(z)
        return value, grad

    return value_and_grad


def _over_groups_and_restarts(function: Callable) -> Callable:
    """Maps function(z (n,), group) over z (G, R, n) and data with a leading group axis."""
    return jax.vmap(jax.vmap(function, in_axes=(0, None)), in_axes=(0, 0))


def _compile(function: Callable, *arguments: Any) -> tuple[Callable, float]:
    started = time.perf_counter()
    compiled = jax.jit(function).lower(*arguments).compile()
    return compiled, time.perf_counter() - started


def _local_search(scorer: Callable, z_start: jax.Array, data: Any, key: jax.Array, sd: jax.Array, *,
                  population: int, generations: int) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy search of the score around each row of z_start (G, n), with initial spread sd (G,): each
    generation draws `population` points around the mean (the mean is one of them), moves the mean to the best
    eighth and sets the spread to theirs (smoothed, and at least a tenth of sd).

    Returns the best z (G, n) and its score (G,) over every generation.
    """
    n_elite = max(2, population // 8)
    groups, size = z_start.shape

    def generation(carry, key):
        mean, spread, best_z, best_score = carry
        z = mean[:, None, :] + spread[:, None, :] * jax.random.normal(key, (groups, population, size), z_start.dtype)
        z = z.at[:, 0].set(mean)
        scores = scorer(z, data)
        scores = jnp.where(jnp.isfinite(scores), scores, -jnp.inf)
        _, top = jax.lax.top_k(scores, n_elite)
        elite = jnp.take_along_axis(z, top[..., None], axis=1)
        spread = jnp.maximum(0.7 * jnp.std(elite, axis=1) + 0.3 * spread, 0.1 * sd[:, None])
        winner = jnp.argmax(scores, axis=1)
        rows = jnp.arange(groups)
        improved = scores[rows, winner] > best_score
        best_z = jnp.where(improved[:, None], z[rows, winner], best_z)
        best_score = jnp.where(improved, scores[rows, winner], best_score)
        return (jnp.mean(elite, axis=1), spread, best_z, best_score), None

    start = (z_start, jnp.broadcast_to(sd[:, None], z_start.shape), z_start, jnp.full(groups, -jnp.inf, z_start.dtype))
    (_, _, best_z, best_score), _ = jax.lax.scan(generation, start, jax.random.split(key, generations))
    return best_z, best_score


def _coordinate_scan(value: Callable, z: np.ndarray, loss: np.ndarray, weights: np.ndarray, data: Any,
                     grid: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One sweep of coordinate search from each start z (G, S, n) with loss (G, S): for each coordinate in turn,
    the loss at every value of `grid` and at the current value plus every one of `offsets` (the others held), and
    a move to the best if it is lower.

    `value(z (G, S * P, n), weights (G, S * P), data) -> (G, S * P)` is the batched loss, P = len(grid) +
    len(offsets). Returns the moved starts and their losses.
    """
    groups, starts, size = z.shape
    points = grid.shape[0] + offsets.shape[0]
    tiled_weights = np.repeat(weights, points, axis=1)
    for j in range(size):
        trial = np.repeat(z[:, :, None, :], points, axis=2)
        trial[..., j] = np.concatenate([np.broadcast_to(grid, (groups, starts, grid.shape[0])),
                                        z[..., j : j + 1] + offsets], axis=-1)
        trial_loss = np.asarray(value(trial.reshape(groups, starts * points, size), tiled_weights, data))
        trial_loss = np.where(np.isfinite(trial_loss), trial_loss, np.inf).reshape(groups, starts, points)
        best = trial_loss.argmin(axis=2)
        best_loss = np.take_along_axis(trial_loss, best[..., None], axis=2)[..., 0]
        better = best_loss < loss
        z = np.where(better[..., None], np.take_along_axis(trial, best[..., None, None], axis=2)[:, :, 0], z)
        loss = np.where(better, best_loss, loss)
    return z, loss


def fit_spiking(
    rhs: SpikingRHS,
    spec: ParamSpec,
    data: Mapping[str, Any],
    *,
    score: Callable[[Mapping[str, jax.Array], Mapping[str, jax.Array]], jax.Array],
    dt_ms: float,
    voltage_limits_mV: tuple[float, float],
    exclude_ms: tuple[float, float],
    n_state: int,
    restarts: int = 16,
    max_steps: int = 150,
    spike_weights: Sequence[float] = (0.05, 0.3, 1.0, 3.0),
    local_starts: int = 3,
    local_generations: int = 12,
    local_population: int = 48,
    local_sds: Sequence[float] = (0.05, 0.5),
    scan_starts: int = 4,
    scan_rounds: int = 2,
    scan_points: int = 33,
    scan_steps: int = 100,
    scan_half_width: float = 4.0,
    scan_local_width: float = 0.25,
    seed: int = 0,
) -> SpikingFitResult:
    """Fits each group's parameters of a threshold-and-reset model (see the module docstring for the stages).

    Args:
        rhs: the model, (params, state, drive) -> (dstate_dt, v_peak, reset); traceable by JAX.
        spec: its free parameters and their bounds.
        data: {"current_pA", "v_start_mV", "voltage_mV", "spikes"}, each with leading (n_groups, n_sweeps) axes.
        score: (params, one group's data) -> scalar, higher is better: what the result is selected by.
        dt_ms, voltage_limits_mV: the simulator's Euler step and voltage limits (`simulate_spiking`).
        exclude_ms: (before, after) each recorded spike, the time left out of the voltage error.
        n_state: the length of the model's state vector.
        restarts: random starts per group of the spike-forced L-BFGS fit.
        max_steps: its L-BFGS iterations at most.
        spike_weights: stage 1's weights of 1 ms^2 of squared spike-time error, relative to 1 mV^2 of mean
            squared subthreshold error, used in turn by the restarts; a recorded spike the model's voltage misses
            by 1 mV weighs MISSED_SPIKE_RATIO times as much as the spike-time term.
        local_starts, local_generations, local_population, local_sds: the local searches of the score around each
            group's best local_starts stage-1 results (`_local_search`), one per initial spread in local_sds
            (unconstrained units: 0.05 lines up spike times of a good fit, 0.5 trades voltage for spikes where
            the model cannot match both); 0 generations skips them.
        scan_starts, scan_rounds, scan_points, scan_steps, scan_half_width, scan_local_width: stage 1b, from each
            group's best scan_starts restarts: scan_rounds rounds of a coordinate scan (per parameter, scan_points
            values evenly over [-scan_half_width, scan_half_width] and scan_points + 1 within +/- scan_local_width
            of its value, unconstrained units) and scan_steps L-BFGS steps; 0 rounds skips it.
        seed: seeds the restarts.

    Raises:
        FitError when a group has no restart with a finite loss and score.
    """
    if restarts < 1 or max_steps < 1 or not spike_weights:
        raise FitError(f"restarts = {restarts}, max_steps = {max_steps}, spike_weights = {tuple(spike_weights)}; "
                       "need at least 1 restart and step, and at least one weight.")
    data = {key: jnp.asarray(data[key], jnp.float32) for key in ("current_pA", "v_start_mV", "voltage_mV", "spikes")}
    n_groups = data["v_start_mV"].shape[0]
    settings = dict(n_state=n_state, dt_ms=dt_ms, voltage_limits_mV=voltage_limits_mV, exclude_ms=exclude_ms)
    rng = np.random.default_rng(seed)
    z0 = rng.uniform(-INIT_HALF_WIDTH, INIT_HALF_WIDTH, size=(n_groups, restarts, spec.size)).astype(np.float32)
    timings = {"compile_s": 0.0, "fit_s": 0.0}

    # stage 1: spike-forced L-BFGS from every restart
    # restart r weighs the spike terms by spike_weights[r % len(spike_weights)]: how much spike timing should
    # count against subthreshold voltage depends on how well the model can match both, and the score decides
    weights = np.resize(np.asarray(spike_weights, np.float32), restarts)

    # an exported candidate without a reverse derivative (`sandbox.exported`: lax.while_loop has none) is fitted in
    # forward mode, as every candidate was until the neuron task's version 7
    reverse = "reverse" not in getattr(rhs, "problems", {})

    def forced_value_and_grad(z, weight, group):
        loss = lambda p, g: forced_loss(rhs, p, g, **settings, spike_time_weight=weight,
                                        missed_spike_weight=weight * MISSED_SPIKE_RATIO)
        return _value_and_grad(loss, spec, reverse=reverse)(z, group)

    # compiled for `chunk` restarts per group; each L-BFGS step evaluates only the restarts still moving, chunk by
    # chunk (late in the fit most have stopped)
    per_start = jax.vmap(jax.vmap(forced_value_and_grad, in_axes=(0, 0, None)), in_axes=(0, 0, 0))
    chunk = min(FORCED_CHUNK, restarts)
    weights_grid = np.tile(weights, (n_groups, 1))
    compiled, seconds = _compile(per_start, z0[:, :chunk], weights_grid[:, :chunk], data)
    timings["compile_s"] += seconds

    def evaluate(z, active):
        loss, grad = np.zeros(z.shape[:2]), np.zeros(z.shape)
        order = np.argsort(~active, axis=1, kind="stable")  # each group's moving restarts first
        for first in range(0, int(active.sum(axis=1).max()), chunk):
            rows = order[:, np.arange(first, first + chunk) % restarts]  # a short last chunk repeats rows
            chunk_loss, chunk_grad = compiled(np.take_along_axis(z, rows[..., None], axis=1).astype(np.float32),
                                              np.take_along_axis(weights_grid, rows, axis=1), data)
            np.put_along_axis(loss, rows, np.asarray(chunk_loss, np.float64), axis=1)
            np.put_along_axis(grad, rows[..., None], np.asarray(chunk_grad, np.float64), axis=1)
        return loss, grad

    started = time.perf_counter()
    outcome = run_host_loop("lbfgs", evaluate, z0, max_steps=max_steps, learning_rate=0.0, tol=1e-6,
                            active_only=True)
    timings["forced_s"] = time.perf_counter() - started
    candidates = [np.where(outcome.ok[..., None], outcome.z, z0).astype(np.float32)]
    stages = ["forced"]

    # every restart scored by the task's score: the local search starts from the best
    scorer = _over_groups_and_restarts(lambda z, g: score(spec.constrain(z), g))
    compiled_score, seconds = _compile(scorer, candidates[0], data)
    timings["compile_s"] += seconds
    started = time.perf_counter()
    scores = [np.where(outcome.ok, np.asarray(compiled_score(candidates[0], data), np.float64), -np.inf)]
    timings["select_s"] = time.perf_counter() - started

    if scan_rounds > 0:
        # stage 1b: from each group's best scan_starts restarts (by the score), coordinate scans of the forced loss
        # and more L-BFGS, in turn: a restart stuck on a plateau or in a narrow valley of the loss (a spike
        # threshold far from the data's, say) is moved to where its gradient leads further
        starts = min(scan_starts, restarts)
        order = np.argsort(-np.nan_to_num(scores[0], nan=-np.inf), axis=1)[:, :starts]
        z_scan = np.take_along_axis(candidates[0], order[..., None], axis=1)
        w_scan = np.take_along_axis(np.tile(weights, (n_groups, 1)), order, axis=1)
        loss_scan = np.take_along_axis(np.where(outcome.ok, outcome.loss, np.inf), order, axis=1)
        per_start = jax.vmap(jax.vmap(forced_value_and_grad, in_axes=(0, 0, None)), in_axes=(0, 0, 0))
        compiled_polish, seconds = _compile(per_start, z_scan, w_scan, data)
        timings["compile_s"] += seconds

        def forced_value(z, weight, group):
            return forced_loss(rhs, spec.constrain(z), group, **settings, spike_time_weight=weight,
                               missed_spike_weight=weight * MISSED_SPIKE_RATIO)

        grid = np.linspace(-scan_half_width, scan_half_width, scan_points, dtype=np.float32)
        offsets = np.linspace(-scan_local_width, scan_local_width, scan_points + 1, dtype=np.float32)
        n_trials = grid.shape[0] + offsets.shape[0]
        trial = np.zeros((n_groups, starts * n_trials, spec.size), np.float32)
        compiled_value, seconds = _compile(jax.vmap(jax.vmap(forced_value, in_axes=(0, 0, None)), in_axes=(0, 0, 0)),
                                           trial, np.repeat(w_scan, n_trials, axis=1), data)
        timings["compile_s"] += seconds

        def evaluate_polish(z):
            loss, grad = compiled_polish(z.astype(np.float32), w_scan, data)
            return np.asarray(loss, np.float64), np.asarray(grad, np.float64)

        started = time.perf_counter()
        for _ in range(scan_rounds):
            z_scan, loss_scan = _coordinate_scan(compiled_value, z_scan, loss_scan, w_scan, data, grid, offsets)
            polished = run_host_loop("lbfgs", evaluate_polish, z_scan, max_steps=scan_steps, learning_rate=0.0,
                                     tol=1e-6)
            keep = polished.ok & (polished.loss <= loss_scan)
            z_scan = np.where(keep[..., None], polished.z, z_scan).astype(np.float32)
            loss_scan = np.where(keep, polished.loss, loss_scan)
        padded = candidates[0].copy()  # scored by stage 1's compiled program, in its first rows
        padded[:, :starts] = z_scan
        scan_scores = np.asarray(compiled_score(padded, data), np.float64)[:, :starts]
        candidates.append(z_scan)
        scores.append(np.where(np.isfinite(loss_scan), scan_scores, -np.inf))
        timings["scan_s"] = time.perf_counter() - started
        stages.append("scan")

    if local_generations > 0:
        # a search from each of the best local_starts results so far of every group at each spread, in one program
        starts = min(local_starts, sum(c.shape[1] for c in candidates))
        n_spreads = len(local_sds)
        pool = np.concatenate(candidates, axis=1)
        order = np.argsort(-np.nan_to_num(np.concatenate(scores, axis=1), nan=-np.inf), axis=1)[:, :starts]
        best_starts = np.take_along_axis(pool, order[..., None], axis=1)  # (G, starts, n)
        z_start = np.tile(best_starts.reshape(1, n_groups * starts, spec.size), (n_spreads, 1, 1))
        z_start = z_start.reshape(n_spreads * n_groups * starts, spec.size)
        spreads = np.repeat(np.asarray(local_sds, np.float32), n_groups * starts)
        repeated = jax.tree.map(lambda x: jnp.tile(jnp.repeat(x, starts, axis=0), (n_spreads,) + (1,) * (x.ndim - 1)),
                                data)
        search = lambda z, d, key, sd: _local_search(scorer, z, d, key, sd, population=local_population,
                                                     generations=local_generations)
        key = jax.random.PRNGKey(seed)
        compiled_search, seconds = _compile(search, z_start, repeated, key, spreads)
        timings["compile_s"] += seconds
        started = time.perf_counter()
        local_z, local_score = jax.block_until_ready(compiled_search(z_start, repeated, key, spreads))
        timings["local_s"] = time.perf_counter() - started
        local_z = np.asarray(local_z, np.float32).reshape(n_spreads, n_groups, starts, spec.size)
        local_score = np.asarray(local_score, np.float64).reshape(n_spreads, n_groups, starts)
        candidates.append(local_z.transpose(1, 0, 2, 3).reshape(n_groups, n_spreads * starts, spec.size))
        scores.append(local_score.transpose(1, 0, 2).reshape(n_groups, n_spreads * starts))
        stages.append("local")

    timings["fit_s"] = sum(timings.get(f"{name}_s", 0.0) for name in ("forced", "select", "scan", "local"))
    all_z = np.concatenate(candidates, axis=1)
    all_scores = np.nan_to_num(np.concatenate(scores, axis=1), nan=-np.inf)
    all_stages = np.concatenate([np.full(c.shape[1], name) for c, name in zip(candidates, stages)])
    best = np.argmax(all_scores, axis=1)
    rows = np.arange(n_groups)
    if not np.all(np.isfinite(all_scores[rows, best])):
        failed = np.flatnonzero(~np.isfinite(all_scores[rows, best])).tolist()
        raise FitError(f"every restart of group(s) {failed[:10]} gave a non-finite loss or score; check the model "
                       "for overflow or division by zero at some parameter values.")
    constrained = spec.constrain(jnp.asarray(all_z[rows, best]))
    params = {name: np.asarray(value, dtype=float) for name, value in constrained.items()}
    return SpikingFitResult(
        params=params,
        score=all_scores[rows, best],
        stage=tuple(str(all_stages[b]) for b in best),
        restarts_ok=outcome.ok.sum(axis=1),
        at_bounds=tuple(spec.at_bounds({n: params[n][g] for n in spec.names}) for g in range(n_groups)),
        timings=timings,
    )
