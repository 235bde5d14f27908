"""Maximum-likelihood fitting by gradient descent, with random restarts batched in one compiled program.

All restarts (and, for `fit_per_group`, all groups) are evaluated together by one `jax.jit` program: the
candidate's likelihood and its gradient, vmapped over a (groups, restarts) batch. Two loops drive it:

- loop="host" (the default on CPU): the optimizer's arithmetic runs in numpy around the compiled evaluation
  (`engine.fit.host_loops`). Only the candidate is compiled, which on CPU cuts the compile time that
  dominates a candidate's fit (bandit benchmark, L-BFGS: 0.8-1.1 s against 1.8-2.5 s).
- loop="device" (the default on accelerators): the whole fit is one compiled `lax.while_loop`
  (`engine.fit.loops`, optax optimizers), with no host round trip per step (H200, 4096 restarts: L-BFGS
  814 restart-fits/s against 188 with the host loop).

Both stop a restart when its relative loss change falls below `tol` and end when every restart has stopped
or after `max_steps`. A restart whose loss or gradient becomes NaN/inf is dropped (for L-BFGS: when its
starting point is non-finite; a non-finite trial step is shrunk instead) and cannot affect the result.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from engine.fit.errors import FitError
from engine.fit.host_loops import run_host_loop
from engine.fit.loops import OPTIMIZERS, BatchedModel, build_loop
from engine.fit.params import ParamSpec

__all__ = [
    "FitResult",
    "GroupFitResult",
    "NegLogLikelihood",
    "OPTIMIZERS",
    "fit_maximum_likelihood",
    "fit_per_group",
]

NegLogLikelihood = Callable[[dict[str, jax.Array], Any], jax.Array]
"""(params: dict name -> scalar array, data: pytree of arrays) -> scalar total negative log-likelihood (nats)."""

INIT_HALF_WIDTH = 2.0  # restart inits are drawn from U(-2, 2) in unconstrained space: sigmoid covers 0.12..0.88


@dataclass(frozen=True, slots=True)
class FitResult:
    """The best of several restarts of a pooled maximum-likelihood fit.

    Attributes:
        params: constrained parameter values of the best restart.
        neg_log_likelihood: total negative log-likelihood (nats) of the training data at `params`.
        restarts_ok: number of restarts whose loss and gradient stayed finite.
        steps: optimizer steps run (the loop stops when all restarts converged).
        converged: whether the best restart met the relative-change rule before `max_steps`.
        at_bounds: names of parameters within 1e-3 * (high - low) of a bound.
        timings: wall seconds {"compile_s", "fit_s"} (compile_s is 0.0 when a compiled program was reused),
            and the process CPU seconds of each, {"compile_cpu_s", "fit_cpu_s"}, which are steadier on a
            shared machine (they include the held-out scorer's compile on its second thread).
        held_out_neg_log_likelihood: total NLL (nats) of `held_out` data at `params`; None without held-out data.
    """

    params: dict[str, float]
    neg_log_likelihood: float
    restarts_ok: int
    steps: int
    converged: bool
    at_bounds: tuple[str, ...]
    timings: dict[str, float]
    held_out_neg_log_likelihood: float | None = None


@dataclass(frozen=True, slots=True)
class GroupFitResult:
    """Independent fits of each group (e.g. each subject), best restart per group.

    Attributes:
        params: name -> (n_groups,) array of constrained values.
        neg_log_likelihood: (n_groups,) total NLL (nats) of each group's training data.
        restarts_ok: (n_groups,) number of finite restarts per group.
        steps: optimizer steps run.
        converged: (n_groups,) whether each group's best restart converged before `max_steps`.
        at_bounds: per group, the names of parameters within 1e-3 * (high - low) of a bound.
        timings: as in FitResult.
        held_out_neg_log_likelihood: (n_groups,) held-out NLL per group, or None without held-out data.
    """

    params: dict[str, np.ndarray]
    neg_log_likelihood: np.ndarray
    restarts_ok: np.ndarray
    steps: int
    converged: np.ndarray
    at_bounds: tuple[tuple[str, ...], ...]
    timings: dict[str, float]
    held_out_neg_log_likelihood: np.ndarray | None = None


def fit_maximum_likelihood(
    neg_log_likelihood: NegLogLikelihood,
    spec: ParamSpec,
    data: Any,
    *,
    held_out: Any = None,
    restarts: int = 16,
    max_steps: int = 300,
    optimizer: str = "adam",
    learning_rate: float = 0.05,
    tol: float = 1e-6,
    seed: int = 0,
    loop: str = "auto",
) -> FitResult:
    """Fits one parameter set to all of `data` by minimizing `neg_log_likelihood` from random restarts.

    Args:
        neg_log_likelihood: (params, data) -> scalar total NLL in nats; params maps each name in `spec` to a
            scalar jax array (constrained value). Must be traceable by JAX (no Python branching on values).
        spec: the free parameters and their bounds, usually `read_params(source, function_name)`.
        data: pytree of arrays (dict, tuple, NamedTuple) passed to `neg_log_likelihood` unchanged.
        held_out: optional pytree like `data`; its NLL is computed once, at the best restart's params.
        restarts: number of random starts, drawn uniformly in [-2, 2] in unconstrained space.
        max_steps: upper limit on optimizer steps.
        optimizer: "adam", "adabelief" (first-order steps of size learning_rate; a restart whose loss or
            gradient turns non-finite is dropped), "lbfgs" (L-BFGS, memory 10, with a backtracking Armijo
            linesearch that evaluates each restart once per step; non-finite trial steps are shrunk, not dropped;
            ignores learning_rate) or "lbfgs-zoom" (optax.lbfgs with its zoom linesearch, vmapped; on CPU
            much slower, kept for comparison).
        learning_rate: step size of adam / adabelief.
        tol: a restart stops when |loss change| <= tol * max(|loss|, 1).
        seed: seeds the restart inits; the fit is deterministic given it.
        loop: "host", "device" or "auto" (host on CPU, device on accelerators), see the module docstring;
            "lbfgs-zoom" always runs on the device.

    Returns:
        the best finite restart.

    Raises:
        FitError (a ValueError) when every restart gives a non-finite likelihood or the arguments are invalid.
    """
    z0 = _initial_points(spec, 1, restarts, seed)
    outcome, steps, timings = _run(neg_log_likelihood, spec, data, held_out, z0, grouped=False,
                                   optimizer=optimizer, max_steps=max_steps, learning_rate=learning_rate, tol=tol,
                                   loop=loop)
    loss, ok, converged, z, held = (x[0] for x in outcome)
    if not ok.any():
        raise FitError(
            f"all {restarts} restarts gave a non-finite likelihood; check the model for log(0), division by "
            "zero or overflow at some parameter values."
        )
    best = int(np.argmin(np.where(ok, loss, np.inf)))
    params = {name: float(value) for name, value in spec.constrain(jnp.asarray(z[best])).items()}
    return FitResult(
        params=params,
        neg_log_likelihood=float(loss[best]),
        restarts_ok=int(ok.sum()),
        steps=steps,
        converged=bool(converged[best]),
        at_bounds=spec.at_bounds(params),
        timings=timings,
        held_out_neg_log_likelihood=None if held_out is None else float(held[best]),
    )


def fit_per_group(
    neg_log_likelihood: NegLogLikelihood,
    spec: ParamSpec,
    data: Any,
    *,
    held_out: Any = None,
    restarts: int = 16,
    max_steps: int = 300,
    optimizer: str = "adam",
    learning_rate: float = 0.05,
    tol: float = 1e-6,
    seed: int = 0,
    loop: str = "auto",
    allow_failed_groups: bool = False,
) -> GroupFitResult:
    """Fits each group (e.g. subject) its own parameters; groups and restarts run batched in one program.

    Args:
        neg_log_likelihood: (params, group_data) -> scalar NLL of one group, as in `fit_maximum_likelihood`.
        spec: the free parameters and their bounds.
        data: pytree of arrays whose every leaf has a leading group axis (n_groups, ...).
        held_out: optional pytree like `data` (same n_groups), scored per group at that group's params.
        restarts, max_steps, optimizer, learning_rate, tol, seed, loop: as in `fit_maximum_likelihood`.
        allow_failed_groups: when True, a group with no finite restart gets NaN parameters, an infinite NLL and
            restarts_ok 0 instead of failing the whole fit (parameter recovery, where one simulated data set the
            model cannot fit is a finding, not an error).

    Returns:
        per-group best restarts.

    Raises:
        FitError when the leaves disagree on n_groups, or (unless allow_failed_groups) some group has no finite
        restart.
    """
    n_groups = _leading_size(data, "data")
    if held_out is not None and _leading_size(held_out, "held_out") != n_groups:
        raise FitError(f"held_out has {_leading_size(held_out, 'held_out')} groups but data has {n_groups}.")
    z0 = _initial_points(spec, n_groups, restarts, seed)
    outcome, steps, timings = _run(neg_log_likelihood, spec, data, held_out, z0, grouped=True,
                                   optimizer=optimizer, max_steps=max_steps, learning_rate=learning_rate, tol=tol,
                                   loop=loop)
    loss, ok, converged, z, held = outcome
    failed = np.flatnonzero(~ok.any(axis=1))
    if failed.size and not allow_failed_groups:
        raise FitError(
            f"all {restarts} restarts gave a non-finite likelihood for group(s) {failed.tolist()[:10]}; "
            "check the model for log(0), division by zero or overflow."
        )
    best = np.argmin(np.where(ok, loss, np.inf), axis=1)
    rows = np.arange(n_groups)
    constrained = spec.constrain(jnp.asarray(z[rows, best]))
    params = {name: np.array(value, dtype=float) for name, value in constrained.items()}
    neg_log_likelihood_best = loss[rows, best].astype(float)
    held_best = None if held_out is None else held[rows, best].astype(float)
    for value in params.values():
        value[failed] = np.nan
    neg_log_likelihood_best[failed] = np.inf
    if held_best is not None:
        held_best[failed] = np.inf
    return GroupFitResult(
        params=params,
        neg_log_likelihood=neg_log_likelihood_best,
        restarts_ok=ok.sum(axis=1),
        steps=steps,
        converged=converged[rows, best] & ok.any(axis=1),
        at_bounds=tuple(() if g in failed else spec.at_bounds({n: params[n][g] for n in spec.names})
                        for g in range(n_groups)),
        timings=timings,
        held_out_neg_log_likelihood=held_best,
    )


def _initial_points(spec: ParamSpec, n_groups: int, restarts: int, seed: int) -> np.ndarray:
    if restarts < 1:
        raise FitError(f"restarts = {restarts}; need at least 1.")
    rng = np.random.default_rng(seed)
    return rng.uniform(-INIT_HALF_WIDTH, INIT_HALF_WIDTH, size=(n_groups, restarts, spec.size)).astype(np.float32)


def _leading_size(tree: Any, what: str) -> int:
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(tree)}
    if len(sizes) != 1 or None in sizes:
        raise FitError(
            f"{what} leaves have leading sizes {sorted(map(str, sizes))}; fit_per_group needs every leaf to "
            "start with the same group axis (n_groups, ...)."
        )
    return sizes.pop()


# Compiled programs, reused when the same likelihood is fitted again with the same shapes and settings
# (e.g. cross-validation folds of one candidate).
_COMPILED: OrderedDict[tuple, Any] = OrderedDict()
_COMPILED_MAX = 16

# Up to this many parameters, gradients are taken in forward mode (bench/fit.py --sweep: compile 0.85 against
# 1.17 CPU s for 2 parameters, 1.19 against 1.64 for 4, at equal or faster fits).
FORWARD_MODE_MAX_PARAMS = 8

# XLA CPU options for the programs compiled here. A candidate is compiled once and then fitted in well under a
# second, so compile time counts as much as run time. With jax 0.10.2, on the bandit benchmark (bench/fit.py
# --sweep, 2 parameters, L-BFGS), turning off the fusion emitters cut compile CPU time from 1.32 s to 0.97 s at
# a similar fit time; XLA versions without this option (jax 0.11) compile with their defaults.
CPU_COMPILER_OPTIONS: dict[str, object] = {"xla_cpu_use_fusion_emitters": False}
# The held-out score is one evaluation at the best parameters, so it is compiled with the cheapest settings,
# on a second thread, while the fit compiles and runs.
BACKGROUND_HELD_OUT_COMPILE = True
HELD_OUT_COMPILER_OPTIONS: dict[str, object] = {"xla_backend_optimization_level": 0,
                                                "xla_cpu_use_fusion_emitters": False}


def _run(neg_log_likelihood, spec, data, held_out, z0, *, grouped, optimizer, max_steps, learning_rate, tol,
         loop):
    """Runs the fit; returns numpy (loss, ok, converged, z, held_loss) per (G, R), the step count and timings."""
    if max_steps < 1:
        raise FitError(f"max_steps = {max_steps}; need at least 1.")
    if optimizer not in OPTIMIZERS:
        raise FitError(f"optimizer = {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}.")
    if loop not in ("auto", "host", "device"):
        raise FitError(f"loop = {loop!r}; expected 'host' (optimizer in numpy around one compiled evaluation), "
                       "'device' (the whole fit in one compiled while loop) or 'auto'.")
    if loop == "auto":
        loop = "host" if jax.default_backend() == "cpu" else "device"
    if optimizer == "lbfgs-zoom":
        loop = "device"
    data = jax.tree.map(jnp.asarray, data)
    held_out = None if held_out is None else jax.tree.map(jnp.asarray, held_out)
    z0 = jnp.asarray(z0)
    timings = {"compile_s": 0.0, "fit_s": 0.0, "compile_cpu_s": 0.0, "fit_cpu_s": 0.0}

    if loop == "device":
        settings = (optimizer, int(max_steps), float(learning_rate), float(tol))
        compiled = _compiled(("device", neg_log_likelihood, spec, grouped, settings), (z0, data, held_out),
                             lambda: _device_program(neg_log_likelihood, spec, grouped, *settings),
                             CPU_COMPILER_OPTIONS, timings)
        with _timed(timings, "fit"):
            loss, ok, converged, z, held, steps = jax.block_until_ready(compiled(z0, data, held_out))
        return tuple(np.asarray(x) for x in (loss, ok, converged, z, held)), int(steps), timings

    held_out_scorer = None
    if held_out is not None and BACKGROUND_HELD_OUT_COMPILE:
        # compile the held-out scorer on a second thread while this one compiles and runs the fit
        z_best_shape = jax.ShapeDtypeStruct((z0.shape[0], 1, z0.shape[2]), jnp.float32)
        held_out_scorer = _BACKGROUND.submit(
            _compiled, ("held_out", neg_log_likelihood, spec, grouped), (z_best_shape, held_out),
            lambda: _value_program(neg_log_likelihood, spec, grouped), HELD_OUT_COMPILER_OPTIONS,
            {"compile_s": 0.0, "compile_cpu_s": 0.0},
        )
    compiled = _compiled(("gradient", neg_log_likelihood, spec, grouped), (z0, data),
                         lambda: _gradient_program(neg_log_likelihood, spec, grouped), CPU_COMPILER_OPTIONS, timings)

    def evaluate(z):
        loss, grad = compiled(z.astype(np.float32), data)
        return np.asarray(loss, dtype=np.float64), np.asarray(grad, dtype=np.float64)

    with _timed(timings, "fit"):
        result = run_host_loop(optimizer, evaluate, np.asarray(z0), max_steps=max_steps,
                               learning_rate=learning_rate, tol=tol)
    held = np.zeros_like(result.loss)
    if held_out is not None:
        # scored once, at each group's best restart only
        best = np.argmin(np.where(result.ok, result.loss, np.inf), axis=1)
        z_best = result.z[np.arange(len(best)), best][:, None, :].astype(np.float32)
        if held_out_scorer is not None:
            with _timed(timings, "compile"):  # whatever of its compile the fit did not hide
                scorer = held_out_scorer.result()
        else:
            scorer = _compiled(("held_out", neg_log_likelihood, spec, grouped), (z_best, held_out),
                               lambda: _value_program(neg_log_likelihood, spec, grouped), HELD_OUT_COMPILER_OPTIONS,
                               timings)
        with _timed(timings, "fit"):
            held_best = np.asarray(scorer(z_best, held_out), dtype=np.float64)[:, 0]
        held = np.repeat(held_best[:, None], result.loss.shape[1], axis=1)
    return (result.loss, result.ok, result.converged, result.z, held), result.steps, timings


class _timed:
    """Adds the wall and CPU seconds of a block to timings[f"{name}_s"] and timings[f"{name}_cpu_s"]."""

    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start, self.start_cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc_info: object) -> None:
        self.timings[f"{self.name}_s"] += time.perf_counter() - self.start
        self.timings[f"{self.name}_cpu_s"] += time.process_time() - self.start_cpu


def _compiled(key, arguments, build_program, options, timings):
    """Returns the compiled program for key and the arguments' shapes, compiling (and timing) it if needed."""
    signature = jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype), arguments)
    key = key + (jax.tree.structure(arguments), tuple(jax.tree.leaves(signature)))
    with _COMPILED_LOCK:
        compiled = _COMPILED.get(key)
        if compiled is not None:
            _COMPILED.move_to_end(key)
            return compiled
    with _timed(timings, "compile"):
        lowered = jax.jit(build_program()).lower(*arguments)
        compiled = _compile(lowered, options)
    with _COMPILED_LOCK:
        _COMPILED[key] = compiled
        if len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    return compiled


_UNSUPPORTED_OPTIONS: set[str] = set()
_BACKGROUND = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-fit-compile")
_COMPILED_LOCK = threading.Lock()


def _compile(lowered, options):
    """Compiles with the CPU options this XLA version supports (XLA adds and drops options between releases)."""
    if jax.default_backend() != "cpu":
        return lowered.compile()
    supported = {name: value for name, value in options.items() if name not in _UNSUPPORTED_OPTIONS}
    try:
        return lowered.compile(compiler_options=supported)
    except jax.errors.JaxRuntimeError as error:
        unknown = [name for name in supported if f"No such compile option: '{name}'" in str(error)]
        if not unknown:
            raise
        _UNSUPPORTED_OPTIONS.update(unknown)
        return _compile(lowered, options)


def _batched_model(neg_log_likelihood, spec, grouped, data):
    def objective(z, data):
        value = jnp.asarray(neg_log_likelihood(spec.constrain(z), data))
        if value.shape != () or not jnp.issubdtype(value.dtype, jnp.floating):
            raise FitError(
                f"neg_log_likelihood returned a {value.dtype} array of shape {value.shape}; expected a float "
                "scalar, the total NLL (sum it over trials)."
            )
        return value

    if spec.size <= FORWARD_MODE_MAX_PARAMS:
        # few parameters: forward mode carries the tangents through the model's scans in one pass instead of
        # a forward scan that stores every step plus a backward scan
        def value_and_grad(z, data):
            grad, value = jax.jacfwd(lambda x: (objective(x, data),) * 2, has_aux=True)(z)
            return value, grad
    else:
        value_and_grad = jax.value_and_grad(objective)
    return BatchedModel(objective, value_and_grad, data, 0 if grouped else None)


def _gradient_program(neg_log_likelihood, spec, grouped):
    """Returns program(z (G, R, n), data) -> (loss (G, R), grad (G, R, n))."""

    def program(z, data):
        return _batched_model(neg_log_likelihood, spec, grouped, data).evaluate(z)

    return program


def _value_program(neg_log_likelihood, spec, grouped):
    """Returns program(z (G, R, n), data) -> loss (G, R)."""

    def program(z, data):
        return _batched_model(neg_log_likelihood, spec, grouped, data).evaluate_value(z)

    return program


def _device_program(neg_log_likelihood, spec, grouped, optimizer, max_steps, learning_rate, tol):
    """Returns program(z0 (G, R, n), data, held_out) -> (loss, ok, converged, z, held_loss, steps)."""
    loop = build_loop(optimizer, max_steps=max_steps, learning_rate=learning_rate, tol=tol)

    def program(z0, data, held_out):
        outcome = loop(z0, _batched_model(neg_log_likelihood, spec, grouped, data))
        if held_out is None:
            held = jnp.zeros_like(outcome.loss)
        else:
            held = _batched_model(neg_log_likelihood, spec, grouped, held_out).evaluate_value(outcome.z)
        return outcome.loss, outcome.ok, outcome.converged, outcome.z, held, outcome.steps

    return program
