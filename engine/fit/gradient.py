"""Maximum-likelihood fitting by gradient descent, with random restarts batched in one compiled program.

All restarts (and, for `fit_per_group`, all groups) are evaluated together by one `jax.jit` program: the
candidate's likelihood and its gradient, vmapped over a (groups, restarts) batch. Two loops drive it:

- loop="host" (the default on CPU): the optimizer's arithmetic runs in numpy around the compiled evaluation
  (`engine.fit.optimizers.run_host_loop`). Only the candidate is compiled, which on CPU cuts the compile time
  that dominates a candidate's fit.
- loop="device" (the default on accelerators): the whole fit is one compiled `lax.while_loop`
  (`engine.fit.optimizers.build_loop`, the same optimizer steps in jax.numpy), with no host round trip per step.

Both stop a restart when its relative loss change falls below `tol` and end when every restart has stopped
or after `max_steps`. A restart whose loss or gradient becomes NaN/inf is dropped (for L-BFGS: when its
starting point is non-finite; a non-finite trial step is shrunk instead) and cannot affect the result.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from engine.fit.errors import FitError
from sandbox import exported
from engine.fit.optimizers import OPTIMIZERS, BatchedModel, build_loop, run_host_loop
from engine.fit.params import ParamSpec

__all__ = [
    "FitResult",
    "GroupFitResult",
    "NegLogLikelihood",
    "OPTIMIZERS",
    "fit",
    "fit_maximum_likelihood",
    "fit_per_group",
    "pad_to",
]

NegLogLikelihood = Callable[[dict[str, jax.Array], Any], jax.Array]
"""(params: dict name -> scalar array, data: pytree of arrays) -> scalar total negative log-likelihood (nats)."""

LogLikelihoodTerms = Callable[[dict[str, jax.Array], Any], jax.Array]
"""(params, data) -> array of log-likelihood terms (e.g. one per session) whose sum is minus the NLL."""

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
        held_out_terms: `log_likelihood_terms(params, held_out)` at `params` (e.g. the log-likelihood of each
            held-out session), as numpy; None unless both were given.
    """

    params: dict[str, float]
    neg_log_likelihood: float
    restarts_ok: int
    steps: int
    converged: bool
    at_bounds: tuple[str, ...]
    timings: dict[str, float]
    held_out_neg_log_likelihood: float | None = None
    held_out_terms: np.ndarray | None = None


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
        held_out_terms: (n_groups, ...) `log_likelihood_terms` of each group's held-out data at its parameters, or
            None.
    """

    params: dict[str, np.ndarray]
    neg_log_likelihood: np.ndarray
    restarts_ok: np.ndarray
    steps: int
    converged: np.ndarray
    at_bounds: tuple[tuple[str, ...], ...]
    timings: dict[str, float]
    held_out_neg_log_likelihood: np.ndarray | None = None
    held_out_terms: np.ndarray | None = None

    def group(self, index: int) -> FitResult:
        """One group's fit, as a pooled fit's result."""
        return FitResult(
            params={name: float(values[index]) for name, values in self.params.items()},
            neg_log_likelihood=float(self.neg_log_likelihood[index]),
            restarts_ok=int(self.restarts_ok[index]),
            steps=self.steps,
            converged=bool(self.converged[index]),
            at_bounds=self.at_bounds[index],
            timings=self.timings,
            held_out_neg_log_likelihood=(None if self.held_out_neg_log_likelihood is None
                                         else float(self.held_out_neg_log_likelihood[index])),
            held_out_terms=None if self.held_out_terms is None else self.held_out_terms[index],
        )


def fit(
    neg_log_likelihood: NegLogLikelihood | None,
    spec: ParamSpec,
    data: Any,
    *,
    grouped: bool,
    held_out: Any = None,
    log_likelihood_terms: LogLikelihoodTerms | None = None,
    restarts: int = 16,
    max_steps: int = 300,
    optimizer: str = "adam",
    learning_rate: float = 0.05,
    tol: float = 1e-6,
    seed: int = 0,
    loop: str = "auto",
    allow_failed_groups: bool = False,
) -> GroupFitResult:
    """The one maximum-likelihood fit: each group its own parameters (`grouped`), or one group pooling all data.

    `fit_maximum_likelihood` (pooled, with its one group as a `FitResult`) and `fit_per_group` call this; see them
    for the arguments. With `grouped`, every leaf of `data` (and `held_out`) starts with the group axis.
    """
    if grouped:
        n_groups = _leading_size(data, "data")
        if held_out is not None and _leading_size(held_out, "held_out") != n_groups:
            raise FitError(f"held_out has {_leading_size(held_out, 'held_out')} groups but data has {n_groups}.")
    else:
        n_groups = 1
    z0 = _initial_points(spec, n_groups, restarts, seed)
    outcome, steps, timings = _run(neg_log_likelihood, log_likelihood_terms, spec, data, held_out, z0,
                                   grouped=grouped, optimizer=optimizer, max_steps=max_steps,
                                   learning_rate=learning_rate, tol=tol, loop=loop)
    loss, ok, converged, z, held, terms = outcome  # each with a leading group axis (one group when pooled)
    failed = np.flatnonzero(~ok.any(axis=1))
    if failed.size and not grouped:
        raise FitError(
            f"all {restarts} restarts gave a non-finite likelihood; check the model for log(0), division by "
            "zero or overflow at some parameter values."
        )
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
    held_best = None if held_out is None else np.asarray(held, dtype=float)
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
        held_out_terms=terms,
    )


def fit_maximum_likelihood(
    neg_log_likelihood: NegLogLikelihood | None,
    spec: ParamSpec,
    data: Any,
    *,
    held_out: Any = None,
    log_likelihood_terms: LogLikelihoodTerms | None = None,
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
        held_out: optional pytree like `data`; its NLL is computed once, at the best restart's params. When its
            leaves have the shapes of `data`'s (pad it), the fit's own compiled program scores it; otherwise a
            second, cheaply optimised program is compiled.
        log_likelihood_terms: optional (params, data) -> array of log-likelihood terms, e.g. one per session or
            trial. When given, the fit minimizes minus their sum (pass None as `neg_log_likelihood`), and the
            held-out data's terms are returned as `held_out_terms`.
        restarts: number of random starts, drawn uniformly in [-2, 2] in unconstrained space.
        max_steps: upper limit on optimizer steps.
        optimizer: "adam", "adabelief" (first-order steps of size learning_rate; a restart whose loss or
            gradient turns non-finite is dropped), "lbfgs" (L-BFGS, memory 10, with a backtracking Armijo
            linesearch that evaluates each restart once per step; non-finite trial steps are shrunk, not dropped;
            ignores learning_rate).
        learning_rate: step size of adam / adabelief.
        tol: a restart stops when |loss change| <= tol * max(|loss|, 1).
        seed: seeds the restart inits; the fit is deterministic given it.
        loop: "host", "device" or "auto" (host on CPU, device on accelerators), see the module docstring.

    Returns:
        the best finite restart.

    Raises:
        FitError (a ValueError) when every restart gives a non-finite likelihood or the arguments are invalid.
    """
    result = fit(neg_log_likelihood, spec, data, grouped=False, held_out=held_out,
                 log_likelihood_terms=log_likelihood_terms, restarts=restarts, max_steps=max_steps,
                 optimizer=optimizer, learning_rate=learning_rate, tol=tol, seed=seed, loop=loop)
    return result.group(0)


def fit_per_group(
    neg_log_likelihood: NegLogLikelihood | None,
    spec: ParamSpec,
    data: Any,
    *,
    held_out: Any = None,
    log_likelihood_terms: LogLikelihoodTerms | None = None,
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
        log_likelihood_terms: optional (params, group_data) -> array, as in `fit_maximum_likelihood`.
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
    return fit(neg_log_likelihood, spec, data, grouped=True, held_out=held_out,
               log_likelihood_terms=log_likelihood_terms, restarts=restarts, max_steps=max_steps, optimizer=optimizer,
               learning_rate=learning_rate, tol=tol, seed=seed, loop=loop, allow_failed_groups=allow_failed_groups)


def pad_to(tree: Any, like: Any) -> Any:
    """Returns `tree` with every leaf zero-padded at the end of each axis to the shape of the same leaf of `like`,
    or `tree` unchanged when some leaf is larger than its counterpart or the structures differ.

    Held-out data padded to the training data's shapes are scored by the fit's own compiled program instead of a
    second one (see `fit_maximum_likelihood`). Padding is zeros, so the likelihood must give zero to a padded unit
    (a mask of 0, as every task's data carry).
    """
    leaves, structure = jax.tree.flatten(tree)
    targets, target_structure = jax.tree.flatten(like)
    if structure != target_structure:
        return tree
    padded = []
    for leaf, target in zip(leaves, targets):
        leaf = np.asarray(leaf)
        shape = np.shape(target)
        if leaf.ndim != len(shape) or any(have > want for have, want in zip(leaf.shape, shape)):
            return tree
        padded.append(np.pad(leaf, [(0, want - have) for have, want in zip(leaf.shape, shape)]))
    return jax.tree.unflatten(structure, padded)


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
# Held-out data of other shapes than the training data are scored once, by a program compiled with the cheapest
# settings. Tasks avoid that compile by padding held-out data to the training data's shapes.
HELD_OUT_COMPILER_OPTIONS: dict[str, object] = {"xla_backend_optimization_level": 0,
                                                "xla_cpu_use_fusion_emitters": False}


def _run(neg_log_likelihood, log_likelihood_terms, spec, data, held_out, z0, *, grouped, optimizer, max_steps,
         learning_rate, tol, loop):
    """Runs the fit; returns numpy (loss, ok, converged, z) per (G, R), the held-out NLL (G,) and terms (G, ...)
    at each group's best restart (None without held-out data), the step count and timings."""
    if max_steps < 1:
        raise FitError(f"max_steps = {max_steps}; need at least 1.")
    if optimizer not in OPTIMIZERS:
        raise FitError(f"optimizer = {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}.")
    if loop not in ("auto", "host", "device"):
        raise FitError(f"loop = {loop!r}; expected 'host' (optimizer in numpy around one compiled evaluation), "
                       "'device' (the whole fit in one compiled while loop) or 'auto'.")
    if loop == "auto":
        loop = "host" if jax.default_backend() == "cpu" else "device"
    if neg_log_likelihood is None and log_likelihood_terms is None:
        raise FitError("neg_log_likelihood is None and no log_likelihood_terms were given; pass one of them.")
    data = jax.tree.map(jnp.asarray, data)
    held_out = None if held_out is None else jax.tree.map(jnp.asarray, held_out)
    z0 = jnp.asarray(z0)
    timings = {"compile_s": 0.0, "fit_s": 0.0, "compile_cpu_s": 0.0, "fit_cpu_s": 0.0}
    functions = (neg_log_likelihood, log_likelihood_terms)

    if loop == "device":
        settings = (optimizer, int(max_steps), float(learning_rate), float(tol))
        compiled = _in_a_mode_the_model_has(spec, lambda forward: _compiled(
            ("device", functions, spec, grouped, settings, forward), (z0, data, held_out),
            lambda: _device_program(*functions, spec, grouped, *settings, forward=forward),
            CPU_COMPILER_OPTIONS, timings))
        with _timed(timings, "fit"):
            loss, ok, converged, z, steps, held = jax.block_until_ready(compiled(z0, data, held_out))
        outcome = tuple(np.asarray(x) for x in (loss, ok, converged, z))
        held_nll, terms = _held_at_best(held, outcome[0], outcome[1])
        return outcome + (held_nll, terms), int(steps), timings

    compiled = _in_a_mode_the_model_has(spec, lambda forward: _compiled(
        ("gradient", functions, spec, grouped, forward), (z0, data),
        lambda: _gradient_program(*functions, spec, grouped, forward=forward), CPU_COMPILER_OPTIONS, timings))

    def evaluate(z):
        loss, grad, _ = compiled(z.astype(np.float32), data)
        return np.asarray(loss, dtype=np.float64), np.asarray(grad, dtype=np.float64)

    with _timed(timings, "fit"):
        result = run_host_loop(optimizer, evaluate, np.asarray(z0), max_steps=max_steps,
                               learning_rate=learning_rate, tol=tol)
    outcome = (result.loss, result.ok, result.converged, result.z)
    held_nll = terms = None
    if held_out is not None:
        # each group's best restart, in every restart's slot
        best = np.argmin(np.where(result.ok, result.loss, np.inf), axis=1)
        z_best = result.z[np.arange(len(best)), best][:, None, :]
        z_best = np.broadcast_to(z_best, result.z.shape).astype(np.float32)
        if _shapes(held_out) == _shapes(data):
            # held-out data shaped like the training data (padded by the task) reuse the fit's program
            scorer = compiled
        else:
            scorer = _compiled(("held_out", functions, spec, grouped), (z0, held_out),
                               lambda: _held_out_program(*functions, spec, grouped), HELD_OUT_COMPILER_OPTIONS,
                               timings)
        with _timed(timings, "fit"):
            held = scorer(z_best, held_out)
            held_nll, terms = (None if x is None else np.asarray(x)[:, 0] for x in (held[0], held[-1]))
    return outcome + (held_nll, terms), result.steps, timings


def _in_a_mode_the_model_has(spec, build):
    """Returns build(forward): forward mode up to FORWARD_MODE_MAX_PARAMS parameters, else reverse mode, unless the
    candidate lacks that derivative (`sandbox.exported`: lax.while_loop has no reverse one, a custom_vjp function no
    forward one); then the other mode, instead of failing."""
    forward = spec.size <= FORWARD_MODE_MAX_PARAMS
    try:
        return build(forward)
    except exported.MissingDerivative as error:
        if error.mode != ("forward" if forward else "reverse"):
            raise
    return build(not forward)


def _shapes(tree):
    return jax.tree.structure(tree), tuple((leaf.shape, leaf.dtype) for leaf in jax.tree.leaves(tree))


def _held_at_best(held, loss, ok):
    """Picks each group's best restart from the device program's held-out values (G, R, ...)."""
    if held is None:
        return None, None
    best = np.argmin(np.where(ok, loss, np.inf), axis=1)
    rows = np.arange(len(best))
    nll, terms = jax.tree.map(lambda x: np.asarray(x)[rows, best], held)
    return nll, terms


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
    """Returns the compiled program for key and the arguments' shapes, compiling (and timing) it if needed.

    The lifted constants of the candidates in this process (`engine/constants.py`) are arguments of the program,
    not numbers inside it, so a candidate that differs from an earlier one only in its constants compiles to the
    same program, which the persistent compilation cache (when configured) already holds.
    """
    candidates = exported.lifted_constants()
    signature = jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype), arguments)
    key = key + (jax.tree.structure(arguments), tuple(jax.tree.leaves(signature)),
                 tuple(id(candidate) for candidate in candidates))
    with _COMPILED_LOCK:
        compiled = _COMPILED.get(key)
        if compiled is not None:
            _COMPILED.move_to_end(key)
            return compiled
    with _timed(timings, "compile"):
        program = build_program()

        def with_constants(constants, *args):
            with exported.constants_as(dict(zip(candidates, constants))):
                return program(*args)

        constants = [jnp.asarray(candidate.constants) for candidate in candidates]
        lowered = jax.jit(with_constants).lower(constants, *arguments)
        compiled = functools.partial(_compile(lowered, options), constants)
    with _COMPILED_LOCK:
        _COMPILED[key] = compiled
        if len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    return compiled


_UNSUPPORTED_OPTIONS: set[str] = set()
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


def _batched_model(neg_log_likelihood, spec, grouped, data, terms_function=None, *, forward):
    """The fit's objective; with `terms_function` the loss is minus the sum of its terms, which value_and_grad
    returns as a third output. Gradients in forward mode when `forward`, else in reverse mode."""

    def objective(z, data):
        if terms_function is not None:
            terms = jnp.asarray(terms_function(spec.constrain(z), data))
            return -jnp.sum(terms), terms
        value = jnp.asarray(neg_log_likelihood(spec.constrain(z), data))
        if value.shape != () or not jnp.issubdtype(value.dtype, jnp.floating):
            raise FitError(
                f"neg_log_likelihood returned a {value.dtype} array of shape {value.shape}; expected a float "
                "scalar, the total NLL (sum it over trials)."
            )
        return value, None

    if forward:
        # few parameters: forward mode carries the tangents through the model's scans in one pass instead of
        # a forward scan that stores every step plus a backward scan
        def value_grad_terms(z, data):
            def value_and_aux(x):
                value, terms = objective(x, data)
                return value, (value, terms)

            with exported.forward_only():  # the candidate's results and tangents in one call
                grad, (value, terms) = jax.jacfwd(value_and_aux, has_aux=True)(z)
            return value, grad, terms
    else:
        def value_grad_terms(z, data):
            (value, terms), grad = jax.value_and_grad(lambda x: objective(x, data), has_aux=True)(z)
            return value, grad, terms

    def value_and_grad(z, data):
        return value_grad_terms(z, data)[:2]

    return BatchedModel(lambda z, data: objective(z, data)[0], value_and_grad, data, 0 if grouped else None,
                        value_grad_terms)


def _held_out_model(neg_log_likelihood, log_likelihood_terms, spec, grouped, held_out):
    """Returns the batched held-out evaluation: z (G, R, n) -> (NLL (G, R), terms (G, R, ...) or None)."""

    def held_one(z, group_data):
        params = spec.constrain(z)
        if log_likelihood_terms is None:
            return jnp.asarray(neg_log_likelihood(params, group_data), jnp.float32), None
        terms = jnp.asarray(log_likelihood_terms(params, group_data))
        return -jnp.sum(terms), terms

    return BatchedModel(held_one, None, held_out, 0 if grouped else None).map(held_one)


def _held_out_program(neg_log_likelihood, log_likelihood_terms, spec, grouped):
    """Returns program(z (G, R, n), held_out) -> (NLL (G, R), terms (G, R, ...) or None)."""

    def program(z, held_out):
        return _held_out_model(neg_log_likelihood, log_likelihood_terms, spec, grouped, held_out)(z)

    return program


def _gradient_program(neg_log_likelihood, log_likelihood_terms, spec, grouped, *, forward):
    """Returns program(z (G, R, n), data) -> (loss (G, R), grad (G, R, n), terms (G, R, ...) or None).

    With `log_likelihood_terms`, the loss is minus the sum of the terms, and the
    terms come out of the same evaluation, so the same program scores held-out data of the training data's shapes.
    """

    def program(z, data):
        return _batched_model(neg_log_likelihood, spec, grouped, data, log_likelihood_terms,
                              forward=forward).evaluate_with_terms(z)

    return program


def _device_program(neg_log_likelihood, log_likelihood_terms, spec, grouped, optimizer, max_steps, learning_rate, tol,
                    *, forward):
    """Returns program(z0 (G, R, n), data, held_out) -> (loss, ok, converged, z, steps, held), where held is the
    held-out (NLL, terms) of every restart's final z, or None."""
    loop = build_loop(optimizer, max_steps=max_steps, learning_rate=learning_rate, tol=tol)

    def program(z0, data, held_out):
        outcome = loop(z0, _batched_model(neg_log_likelihood, spec, grouped, data, log_likelihood_terms,
                                          forward=forward))
        held = None
        if held_out is not None:
            held = _held_out_model(neg_log_likelihood, log_likelihood_terms, spec, grouped, held_out)(outcome.z)
        return outcome.loss, outcome.ok, outcome.converged, outcome.z, outcome.steps, held

    return program
