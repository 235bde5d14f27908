"""The fitter's optimizers, each written once as a step over a (groups, restarts) batch, and two drivers.

An optimizer here is a pair of functions on a dict of (G, R, ...) arrays, written against an array module `xp`
(numpy or jax.numpy):

- `init(xp, z0)` makes the state from the starts z0 (G, R, n);
- `step(xp, state, loss, grad, ...)` takes the loss (G, R) and gradient (G, R, n) at the point that
  `point(state)` asks for, and returns the next state.

Every restart moves on its own (its own linesearch, its own convergence); a restart whose start is non-finite
(or, for Adam and AdaBelief, whose loss or gradient turns non-finite) is dropped and cannot affect the result.

The drivers run the same steps in two places:

- `run_host_loop`: the steps in numpy around one compiled evaluation of all restarts, one call per step. Only
  the candidate's model is compiled, which on CPU compiles several times faster than a loop inside the program.
- `build_loop`: the whole fit as one `lax.while_loop` (jax.numpy), with the model's value and gradient at one
  call site, for accelerators, where a host round trip per step costs more than the arithmetic.

On the host the state is float64; in the compiled loop it has the model's dtype (float32), so the two loops reach
the same optimum up to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from engine.fit.errors import FitError

__all__ = ["OPTIMIZERS", "BatchedModel", "Outcome", "build_loop", "run_host_loop"]

OPTIMIZERS = ("adam", "adabelief", "lbfgs")

ARMIJO_SLOPE = 1e-4  # sufficient decrease: f(z + t d) <= f(z) + ARMIJO_SLOPE * t * (g . d)
MAX_BACKTRACKS = 30  # a restart that cannot decrease after this many step shrinks has converged
LBFGS_MEMORY = 10
ADAM_BETAS = (0.9, 0.999)

State = dict[str, Any]
Evaluate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""z (G, R, n) -> loss (G, R), grad (G, R, n), both numpy."""


class Outcome(NamedTuple):
    """Per restart: best loss (G, R), finite (G, R), converged (G, R), best z (G, R, n); iterations run."""

    loss: Any
    ok: Any
    converged: Any
    z: Any
    steps: Any


def _quiet(xp):
    """numpy's warnings about inf and NaN off (they are expected and masked); jax.numpy warns about none."""
    return np.errstate(invalid="ignore", over="ignore", divide="ignore") if xp is np else contextlib.nullcontext()


def _small_change(xp, loss, previous, tol):
    with _quiet(xp):
        return xp.abs(loss - previous) <= tol * xp.maximum(xp.abs(loss), 1.0)


# Adam and AdaBelief.

def first_order_init(xp, z0) -> State:
    batch = z0.shape[:2]
    inf = xp.full(batch, xp.inf, dtype=z0.dtype)
    return dict(step=0, z=z0, first=xp.zeros_like(z0), second=xp.zeros_like(z0), previous=inf, best_loss=inf,
                best_z=z0, active=xp.ones(batch, bool), ok=xp.ones(batch, bool), converged=xp.zeros(batch, bool))


def first_order_step(xp, state: State, loss, grad, *, learning_rate: float, tol: float, belief: bool) -> State:
    """One Adam (or AdaBelief: the second moment of the gradient's deviation from its running mean) step, from
    the loss and gradient at state["z"]."""
    beta1, beta2 = ADAM_BETAS
    active = state["active"]
    finite = xp.isfinite(loss) & xp.isfinite(grad).all(axis=-1)
    ok = state["ok"] & (finite | ~active)
    keep = active & finite
    small = keep & _small_change(xp, loss, state["previous"], tol)
    improved = keep & (loss < state["best_loss"])
    active = keep & ~small
    step = state["step"] + 1
    power = step if xp is np else step.astype(loss.dtype)  # a Python int on the host, as numpy's arithmetic had
    grad = xp.where(keep[..., None], grad, 0.0)
    new_first = beta1 * state["first"] + (1 - beta1) * grad
    if belief:
        new_second = beta2 * state["second"] + (1 - beta2) * (grad - new_first) ** 2 + 1e-16
        denominator = xp.sqrt(new_second / (1 - beta2**power)) + 1e-16
    else:
        new_second = beta2 * state["second"] + (1 - beta2) * grad**2
        denominator = xp.sqrt(new_second / (1 - beta2**power)) + 1e-8
    move = active[..., None]
    z = state["z"]
    return dict(
        step=step,
        z=xp.where(move, z - learning_rate * (new_first / (1 - beta1**power)) / denominator, z),
        first=xp.where(move, new_first, state["first"]),
        second=xp.where(move, new_second, state["second"]),
        previous=xp.where(keep, loss, state["previous"]),
        best_loss=xp.where(improved, loss, state["best_loss"]),
        best_z=xp.where(improved[..., None], z, state["best_z"]),
        active=active,
        ok=ok,
        converged=state["converged"] | small,
    )


def first_order_outcome(xp, state: State, final_loss) -> Outcome:
    """The outcome, keeping the last update (never evaluated by a step) where its loss `final_loss` is better."""
    better = state["ok"] & xp.isfinite(final_loss) & (final_loss < state["best_loss"])
    loss = xp.where(better, final_loss, state["best_loss"])
    z = xp.where(better[..., None], state["z"], state["best_z"])
    return Outcome(loss, state["ok"] & xp.isfinite(loss), state["converged"], z, state["step"])


# L-BFGS with a backtracking Armijo linesearch.

def lbfgs_init(xp, z0) -> State:
    batch, n = z0.shape[:2], z0.shape[-1]
    return dict(step=0, z=z0, loss=xp.full(batch, xp.inf, dtype=z0.dtype), grad=xp.zeros_like(z0),
                direction=xp.zeros_like(z0), t=xp.zeros(batch, dtype=z0.dtype),
                backtracks=xp.zeros(batch, dtype=xp.int32), memory_s=xp.zeros(batch + (LBFGS_MEMORY, n), z0.dtype),
                memory_y=xp.zeros(batch + (LBFGS_MEMORY, n), z0.dtype), memory_count=xp.zeros(batch, xp.int32),
                active=xp.ones(batch, bool), ok=xp.ones(batch, bool), converged=xp.zeros(batch, bool),
                started=xp.zeros(batch, bool))


def lbfgs_point(state: State):
    """The trial point whose loss and gradient the next step takes: z + t d."""
    return state["z"] + state["t"][..., None] * state["direction"]


def lbfgs_step(xp, state: State, trial_loss, trial_grad, *, tol: float) -> State:
    """One iteration: every restart evaluated once, at its trial point.

    A restart whose trial point satisfies the Armijo rule accepts it and updates its curvature memory;
    otherwise its step shrinks (quadratic interpolation, clipped to [0.1 t, 0.5 t]). Restarts move through their
    linesearches independently. A non-finite trial shrinks the step; a restart is dropped only when its starting
    point is non-finite.
    """
    z, loss, grad, direction, t = state["z"], state["loss"], state["grad"], state["direction"], state["t"]
    active, started = state["active"], state["started"]
    trial = lbfgs_point(state)
    finite = xp.isfinite(trial_loss) & xp.isfinite(trial_grad).all(axis=-1)
    ok = state["ok"] & (started | finite | ~active)
    slope = xp.einsum("grn,grn->gr", grad, direction)
    with _quiet(xp):
        armijo = trial_loss <= loss + ARMIJO_SLOPE * t * slope
    accept = active & finite & (~started | armijo)
    small = accept & started & _small_change(xp, trial_loss, loss, tol)

    # rejected restarts: shrink the step by quadratic interpolation along the line
    with _quiet(xp):
        curvature = trial_loss - loss - slope * t
        t_quadratic = -slope * t**2 / (2.0 * curvature)
    usable = finite & (curvature > 0) & xp.isfinite(t_quadratic)
    t_shrunk = xp.where(usable, xp.clip(xp.nan_to_num(t_quadratic), 0.1 * t, 0.5 * t), 0.1 * t)
    backtracks = xp.where(accept, 0, state["backtracks"] + active.astype(state["backtracks"].dtype))
    stuck = active & ~accept & (backtracks > MAX_BACKTRACKS)

    # accepted restarts: remember the curvature pair, then take the new L-BFGS direction
    s = trial - z
    y = trial_grad - grad
    sy = xp.einsum("grn,grn->gr", s, y)
    remember = accept & started & (sy > 1e-10 * xp.linalg.norm(s, axis=-1) * xp.linalg.norm(y, axis=-1))
    memory_s = _remember(xp, state["memory_s"], s, remember)
    memory_y = _remember(xp, state["memory_y"], y, remember)
    memory_count = xp.where(remember, xp.minimum(state["memory_count"] + 1, LBFGS_MEMORY), state["memory_count"])

    new_grad = xp.where(accept[..., None], xp.nan_to_num(trial_grad), grad)
    new_direction = -_two_loop(xp, new_grad, memory_s, memory_y, memory_count)
    reset = accept & (xp.einsum("grn,grn->gr", new_grad, new_direction) >= 0)
    if xp is not np or reset.any():  # curvature memory went bad: restart it from steepest descent
        memory_count = xp.where(reset, 0, memory_count)
        fresh = -_two_loop(xp, new_grad, memory_s, memory_y, memory_count)
        new_direction = xp.where(reset[..., None], fresh, new_direction)

    return dict(
        step=state["step"] + 1,
        z=xp.where(accept[..., None], trial, z),
        loss=xp.where(accept, trial_loss, loss),
        grad=new_grad,
        direction=xp.where(accept[..., None], new_direction, direction),
        t=xp.where(accept, 1.0, t_shrunk).astype(t.dtype),
        backtracks=backtracks.astype(state["backtracks"].dtype),
        memory_s=memory_s,
        memory_y=memory_y,
        memory_count=memory_count.astype(state["memory_count"].dtype),
        active=active & ok & ~small & ~stuck,
        ok=ok,
        converged=state["converged"] | small | stuck,
        started=started | accept,
    )


def lbfgs_outcome(xp, state: State) -> Outcome:
    return Outcome(state["loss"], state["ok"] & xp.isfinite(state["loss"]), state["converged"], state["z"],
                   state["step"])


def _remember(xp, memory, pair, remember):
    """Shifts the restarts' memory (G, R, m, n) by one slot and puts `pair` last, where `remember` (G, R)."""
    rolled = xp.where(remember[..., None, None], xp.roll(memory, -1, axis=-2), memory)
    last = xp.where(remember[..., None], pair, rolled[..., -1, :])
    return xp.concatenate([rolled[..., :-1, :], last[..., None, :]], axis=-2)


def _two_loop(xp, grad, memory_s, memory_y, memory_count):
    """Returns H g per restart by the L-BFGS two-loop recursion (Nocedal & Wright, Algorithm 7.4).

    Memory slot i of a restart is in use when i >= LBFGS_MEMORY - memory_count. With no memory, H is the
    identity scaled to a step of length at most 1.
    """
    slots = xp.arange(LBFGS_MEMORY).reshape(1, 1, LBFGS_MEMORY)
    in_use = slots >= (LBFGS_MEMORY - memory_count)[..., None]  # (G, R, m)
    sy = xp.einsum("grmn,grmn->grm", memory_s, memory_y)
    rho = xp.where(in_use, 1.0 / xp.where(in_use, sy, 1.0), 0.0)
    q = grad
    alphas = [None] * LBFGS_MEMORY
    for i in range(LBFGS_MEMORY - 1, -1, -1):
        alphas[i] = rho[..., i] * xp.einsum("grn,grn->gr", memory_s[..., i, :], q)
        q = q - alphas[i][..., None] * memory_y[..., i, :]
    newest_y = memory_y[..., -1, :]
    yy = xp.einsum("grn,grn->gr", newest_y, newest_y)
    gamma_memory = sy[..., -1] / xp.where(yy > 0, yy, 1.0)
    gamma_none = xp.minimum(1.0, 1.0 / xp.maximum(xp.linalg.norm(grad, axis=-1), 1e-12))
    gamma = xp.where(memory_count > 0, gamma_memory, gamma_none)
    r = gamma[..., None] * q
    for i in range(LBFGS_MEMORY):
        beta = rho[..., i] * xp.einsum("grn,grn->gr", memory_y[..., i, :], r)
        r = r + memory_s[..., i, :] * (alphas[i] - beta)[..., None]
    return r


def _check(optimizer: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise FitError(f"optimizer = {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}.")


# The host driver.

def run_host_loop(optimizer: str, evaluate: Evaluate, z0: np.ndarray, *, max_steps: int, learning_rate: float,
                  tol: float, active_only: bool = False) -> Outcome:
    """Minimizes from each start in z0 (G, R, n), calling `evaluate` once per step; numpy state in float64.

    See `engine.fit.fit_maximum_likelihood` for the rules. With `active_only` (L-BFGS only), `evaluate` is called
    as evaluate(z, active) with the (G, R) mask of the restarts still moving, and only their rows of its loss and
    gradient are read: a restart that has converged or failed stays where it is, so a caller can skip computing
    it (late in a fit most restarts have stopped).
    """
    _check(optimizer)
    if active_only and optimizer != "lbfgs":
        raise FitError(f"active_only is implemented for L-BFGS, not {optimizer!r}.")
    z0 = np.asarray(z0).astype(np.float64)
    if optimizer == "lbfgs":
        state = lbfgs_init(np, z0)
        while state["step"] < max_steps and state["active"].any():
            point = lbfgs_point(state)
            if active_only:
                loss, grad = evaluate(point, state["active"].copy())
                # rows of stopped restarts are never used: put the current values there, so nothing reads garbage
                loss = np.where(state["active"], loss, state["loss"])
                grad = np.where(state["active"][..., None], grad, state["grad"])
            else:
                loss, grad = evaluate(point)
            state = lbfgs_step(np, state, loss, grad, tol=tol)
        return lbfgs_outcome(np, state)
    state = first_order_init(np, z0)
    belief = optimizer == "adabelief"
    while state["step"] < max_steps and state["active"].any():
        loss, grad = evaluate(state["z"])
        state = first_order_step(np, state, loss, grad, learning_rate=learning_rate, tol=tol, belief=belief)
    final_loss = state["best_loss"]
    if (state["ok"] & ~state["converged"]).any():  # the last update was never evaluated
        final_loss, _ = evaluate(state["z"])
    return first_order_outcome(np, state, final_loss)


# The compiled driver.

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
        import jax

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

    def evaluate(self, z):
        """Returns loss (G, R) and grad (G, R, n) at z (G, R, n)."""
        return self.map(self.value_and_grad)(z)

    def evaluate_with_terms(self, z):
        """Returns loss (G, R), grad (G, R, n) and the objective's terms (G, R, ...) or None, at z (G, R, n)."""
        return self.map(self.value_grad_terms)(z)

    def evaluate_value(self, z):
        """Returns loss (G, R) at z (G, R, n)."""
        return self.map(self.value)(z)


def build_loop(optimizer: str, *, max_steps: int, learning_rate: float,
               tol: float) -> Callable[[Any, BatchedModel], Outcome]:
    """Returns loop(z0 (G, R, n), model) -> Outcome: the same steps as `run_host_loop`, as one lax.while_loop in
    which the model is evaluated at one call site (so XLA compiles the candidate once)."""
    _check(optimizer)
    import jax
    import jax.numpy as jnp

    def run(z0, model, init, point, step):
        state = init(jnp, z0)
        state["step"] = jnp.asarray(0)

        def cond(state):
            return (state["step"] < max_steps) & state["active"].any()

        def body(state):
            loss, grad = model.evaluate(point(state))
            return step(state, loss, grad)

        return jax.lax.while_loop(cond, body, state)

    if optimizer == "lbfgs":
        def loop(z0, model):
            state = run(z0, model, lbfgs_init, lbfgs_point,
                        lambda state, loss, grad: lbfgs_step(jnp, state, loss, grad, tol=tol))
            return lbfgs_outcome(jnp, state)
        return loop

    belief = optimizer == "adabelief"

    def loop(z0, model):
        state = run(z0, model, first_order_init, lambda state: state["z"],
                    lambda state, loss, grad: first_order_step(jnp, state, loss, grad, learning_rate=learning_rate,
                                                               tol=tol, belief=belief))
        return first_order_outcome(jnp, state, model.evaluate_value(state["z"]))

    return loop
