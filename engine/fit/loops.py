"""Optimizer loops over a (groups, restarts) batch, written as one `lax.while_loop` each.

Every loop has one call site of the model's value-and-gradient inside its body, so XLA compiles the candidate's
model once. Each builder returns `loop(z0 (G, R, n), model)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from engine.fit.errors import FitError

__all__ = ["OPTIMIZERS", "BatchedModel", "Outcome", "build_loop"]

OPTIMIZERS = ("adam", "adabelief", "lbfgs")

ARMIJO_SLOPE = 1e-4  # sufficient decrease: f(z + t d) <= f(z) + ARMIJO_SLOPE * t * (g . d)
MAX_BACKTRACKS = 30  # a restart that cannot decrease after this many step halvings has converged
LBFGS_MEMORY = 10


class Outcome(NamedTuple):
    """Per restart: best loss (G, R), finite (G, R), converged (G, R), best z (G, R, n); loop iterations ()."""

    loss: jax.Array
    ok: jax.Array
    converged: jax.Array
    z: jax.Array
    steps: jax.Array


class BatchedModel(NamedTuple):
    """The objective of one restart and the data it is evaluated on, batched over (groups, restarts).

    value: (z (n,), group_data) -> scalar loss.
    value_and_grad: (z (n,), group_data) -> (loss, grad (n,)).
    value_grad_terms: (z (n,), group_data) -> (loss, grad (n,), terms or None), where the objective has terms.
    data: pytree; leaves carry a leading group axis when data_axis == 0, none when data_axis is None.
    """

    value: Callable
    value_and_grad: Callable
    data: object
    data_axis: int | None
    value_grad_terms: Callable | None = None

    def map(self, function: Callable) -> Callable:
        """Batches `function(*per_restart_args, group_data)` over (G, R) leading axes of its other arguments."""

        def batched(*args):
            inner = jax.vmap(function, in_axes=(0,) * len(args) + (None,))
            if self.data_axis is None:
                # shared data: one vmap over the flattened (G * R) batch traces and compiles faster than two
                batch = jax.tree.leaves(args)[0].shape[:2]
                flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), args)
                out = inner(*flat, self.data)
                return jax.tree.map(lambda x: x.reshape(batch + x.shape[1:]), out)
            outer = jax.vmap(inner, in_axes=(0,) * len(args) + (self.data_axis,))
            return outer(*args, self.data)

        return batched

    def evaluate(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns loss (G, R) and grad (G, R, n) at z (G, R, n)."""
        return self.map(self.value_and_grad)(z)

    def evaluate_with_terms(self, z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """Returns loss (G, R), grad (G, R, n) and the objective's terms (G, R, ...) or None, at z (G, R, n)."""
        return self.map(self.value_grad_terms)(z)

    def evaluate_value(self, z: jax.Array) -> jax.Array:
        """Returns loss (G, R) at z (G, R, n)."""
        return self.map(self.value)(z)


def build_loop(optimizer: str, *, max_steps: int, learning_rate: float,
               tol: float) -> Callable[[jax.Array, BatchedModel], Outcome]:
    """Returns the batched loop of `optimizer`, one of OPTIMIZERS."""
    if optimizer in ("adam", "adabelief"):
        transform = optax.adam(learning_rate) if optimizer == "adam" else optax.adabelief(learning_rate)
        transform = _standard_promotion(transform)
        return _first_order_loop(transform, max_steps, tol)
    if optimizer == "lbfgs":
        return _lbfgs_backtracking_loop(max_steps, tol)
    raise FitError(f"optimizer = {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}.")


def _standard_promotion(transform) -> optax.GradientTransformationExtraArgs:
    """Runs an optax transformation under JAX's standard promotion rules, which optax's internals rely on,
    also when the caller traces under strict promotion (as the tests do)."""

    def init(params):
        with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
            return transform.init(params)

    def update(updates, state, params=None, **extra_args):
        with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
            return transform.update(updates, state, params, **extra_args)

    return optax.GradientTransformationExtraArgs(init, update)


def _relative_change_small(loss, previous, tol):
    return jnp.abs(loss - previous) <= tol * jnp.maximum(jnp.abs(loss), 1.0)


def _batched(function, n_batch_axes=2):
    for _ in range(n_batch_axes):
        function = jax.vmap(function)
    return function


def _mask_tree(keep, new, old):
    """Takes `new` where keep (G, R) is true, else `old`, for trees of (G, R, ...) leaves."""
    return jax.tree.map(lambda a, b: jnp.where(keep.reshape(keep.shape + (1,) * (a.ndim - 2)), a, b), new, old)


def _first_order_loop(transform, max_steps, tol):
    """Adam-like steps; a restart whose loss or gradient turns non-finite is dropped."""

    def loop(z0, model):
        batch = z0.shape[:2]
        inf = jnp.full(batch, jnp.inf, z0.dtype)
        init = dict(step=jnp.asarray(0), z=z0, opt_state=_batched(transform.init)(z0), previous=inf,
                    best_loss=inf, best_z=z0, active=jnp.ones(batch, bool), ok=jnp.ones(batch, bool),
                    converged=jnp.zeros(batch, bool))

        def cond(carry):
            return (carry["step"] < max_steps) & carry["active"].any()

        def body(carry):
            loss, grad = model.evaluate(carry["z"])
            updates, opt_state = _batched(transform.update)(grad, carry["opt_state"], carry["z"])
            z_next = carry["z"] + updates
            active = carry["active"]
            finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(grad), axis=-1)
            small = _relative_change_small(loss, carry["previous"], tol)
            improved = active & finite & (loss < carry["best_loss"])
            keep = active & finite
            return dict(
                step=carry["step"] + 1,
                z=_mask_tree(keep, z_next, carry["z"]),
                opt_state=_mask_tree(keep, opt_state, carry["opt_state"]),
                previous=jnp.where(keep, loss, carry["previous"]),
                best_loss=jnp.where(improved, loss, carry["best_loss"]),
                best_z=_mask_tree(improved, carry["z"], carry["best_z"]),
                active=keep & ~small,
                ok=carry["ok"] & (finite | ~active),
                converged=carry["converged"] | (keep & small),
            )

        carry = jax.lax.while_loop(cond, body, init)
        # the last update was never evaluated: score it and keep it when better
        final_loss = model.evaluate_value(carry["z"])
        better = carry["ok"] & jnp.isfinite(final_loss) & (final_loss < carry["best_loss"])
        loss = jnp.where(better, final_loss, carry["best_loss"])
        z = _mask_tree(better, carry["z"], carry["best_z"])
        return Outcome(loss, carry["ok"] & jnp.isfinite(loss), carry["converged"], z, carry["step"])

    return loop


def _lbfgs_backtracking_loop(max_steps, tol):
    """L-BFGS directions (optax.scale_by_lbfgs) with a backtracking Armijo linesearch, one evaluation per iteration.

    Each iteration evaluates every restart at its trial point z + t d. A trial that satisfies the Armijo rule is
    accepted and the L-BFGS memory is updated; otherwise t shrinks (quadratic interpolation, clipped to
    [0.1 t, 0.5 t]). Restarts therefore move through their linesearches independently, and the model appears once
    in the compiled program. A non-finite trial just shrinks the step; a restart is dropped only when its
    starting point is non-finite.
    """
    direction_transform = _standard_promotion(optax.scale_by_lbfgs(memory_size=LBFGS_MEMORY))

    def new_direction(grad, state, z):
        preconditioned, new_state = direction_transform.update(grad, state, z)
        direction = -preconditioned
        # when curvature information makes it a non-descent direction, restart the memory from here
        fresh_preconditioned, fresh_state = direction_transform.update(grad, direction_transform.init(z), z)
        descent = jnp.vdot(grad, direction) < 0
        direction = jnp.where(descent, direction, -fresh_preconditioned)
        new_state = jax.tree.map(lambda a, b: jnp.where(descent, a, b), new_state, fresh_state)
        return direction, new_state

    def update_one(c, loss, grad):
        """One restart's state machine; c holds this restart's carry (no batch axes)."""
        finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(grad))
        started = jnp.isfinite(c["loss"])
        slope = jnp.vdot(c["grad"], c["direction"])  # negative for a descent direction
        armijo = loss <= c["loss"] + ARMIJO_SLOPE * c["t"] * slope
        accept = c["active"] & finite & (~started | armijo)
        trial = c["z"] + c["t"] * c["direction"]

        direction, lbfgs_state = new_direction(grad, c["lbfgs"], trial)
        small = started & _relative_change_small(loss, c["loss"], tol)

        # rejected: shrink t by quadratic interpolation of f along the line
        curvature = loss - c["loss"] - slope * c["t"]
        t_quadratic = -slope * c["t"] ** 2 / (2.0 * jnp.where(curvature > 0, curvature, 1.0))
        t_shrunk = jnp.where(finite & (curvature > 0), jnp.clip(t_quadratic, 0.1 * c["t"], 0.5 * c["t"]),
                             0.1 * c["t"])
        backtracks = jnp.where(accept, 0, c["backtracks"] + c["active"].astype(jnp.int32))
        stuck = backtracks > MAX_BACKTRACKS
        ok = c["ok"] & (started | finite | ~c["active"])

        def pick(a, b):
            return jax.tree.map(lambda x, y: jnp.where(accept, x, y), a, b)

        return dict(
            z=pick(trial, c["z"]),
            loss=jnp.where(accept, loss, c["loss"]),
            grad=pick(grad, c["grad"]),
            direction=pick(direction, c["direction"]),
            lbfgs=pick(lbfgs_state, c["lbfgs"]),
            t=jnp.where(accept, 1.0, t_shrunk).astype(c["t"].dtype),
            backtracks=backtracks,
            active=c["active"] & ok & ~(accept & small) & ~stuck,
            ok=ok,
            converged=c["converged"] | (accept & small) | (c["active"] & stuck),
        )

    def loop(z0, model):
        batch = z0.shape[:2]
        init = dict(
            z=z0, loss=jnp.full(batch, jnp.inf, z0.dtype), grad=jnp.zeros_like(z0), direction=jnp.zeros_like(z0),
            lbfgs=_batched(direction_transform.init)(z0), t=jnp.zeros(batch, z0.dtype),
            backtracks=jnp.zeros(batch, jnp.int32), active=jnp.ones(batch, bool), ok=jnp.ones(batch, bool),
            converged=jnp.zeros(batch, bool),
        )

        def cond(state):
            step, carry = state
            return (step < max_steps) & carry["active"].any()

        def body(state):
            step, carry = state
            trial = carry["z"] + carry["t"][..., None] * carry["direction"]
            loss, grad = model.evaluate(trial)
            return step + 1, _batched(update_one)(carry, loss, grad)

        steps, carry = jax.lax.while_loop(cond, body, (jnp.asarray(0), init))
        ok = carry["ok"] & jnp.isfinite(carry["loss"])
        return Outcome(carry["loss"], ok, carry["converged"], carry["z"], steps)

    return loop
