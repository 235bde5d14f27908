"""A candidate crosses from the tracing sandbox to the trusted scorer as a serialized computation, never as Python.

The candidate's Python runs only in the tracing sandbox (`export_candidate`): its evolved function is traced with
abstract inputs (shapes and dtypes, never data), batched with `jax.vmap` over a symbolic leading dimension, and
exported as StableHLO with its derivative (`jax.export`, `vjp_order=1`). What comes back is bytes.

The trusted scorer (`load_candidate`) deserializes those bytes, checks them (`check_exported`: the arguments the
task declared, no effects, no host callbacks, custom calls only from `ALLOWED_CUSTOM_CALLS`) and returns a
`CandidateFunction`: a callable with the evolved function's signature that the task's `score(...)` uses exactly
as it would the Python function, under `jit`, `vmap` (nested too), `lax.scan`, `grad` and `eval_shape`. The
scorer's code, the fitter and the data never share a process with candidate Python, so a candidate cannot patch
them, read the data or forge its verdict: the only thing it controls is the computation that is scored.

How it stays differentiable and batchable: a deserialized `Exported.call` has no batching rule, so the candidate
is exported once, already batched over a symbolic dimension "batch" with every argument batched. A call with one
set of arguments adds a batch of one; `vmap` over it broadcasts unbatched arguments and calls the batched export
(`jax.custom_batching.custom_vmap`); a `vmap` of that merges its axis into the batch (a reshape), so any depth of
nesting is one exported call. `custom_vmap` does not support reverse mode, so the whole is wrapped in a
`jax.custom_vjp` whose backward pass calls the exported derivative, batched the same way.

This module runs inside the sandbox's worker (`sandbox/zygote.py` loads it by path): standard library and JAX only.

Input specifications (task.yaml `inputs`), one per argument after `params`, in order:
    "float32"        a scalar
    "float32[8]"     a vector of 8
    "int32[n, 9]"    a matrix with a symbolic first dimension `n` (any size; one name means one size)
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import functools
import json
import re
import struct
import time
import types
import weakref
from typing import Any, Iterator, Mapping, Sequence

__all__ = ["export_candidate", "load_candidate", "check_exported", "parse_input", "CandidateFunction",
           "ALLOWED_CUSTOM_CALLS", "BATCH_DIMENSION", "ExportRejected", "MissingDerivative", "lifted_constants",
           "constants_as", "forward_only", "prepare"]

#: The symbolic leading dimension every exported argument and result carries.
BATCH_DIMENSION = "batch"
#: The forward derivative's tangents carry a second symbolic dimension, the number of tangent directions (e.g. one
#: per parameter under `jax.jacfwd`), so that one evaluation of the model serves every direction.
DIRECTIONS_DIMENSION = "directions"

#: Custom calls an exported computation may contain: shape checks that `jax.export` adds for symbolic shapes,
#: sharding annotations, and numerical kernels that ship with jaxlib (LAPACK and cuSOLVER factorizations, the
#: GPU's threefry random bits). Anything else (host callbacks above all: `pure_callback`, `io_callback`,
#: `debug.callback`, `debug.print`) is rejected: a callback would run host code in the trusted worker.
ALLOWED_CUSTOM_CALLS = re.compile(
    r"shape_assertion|Sharding|SPMDFullToShardShape|SPMDShardToFullShape|annotate_device_placement"
    r"|lapack_[a-z0-9_]+|cusolver_[a-z0-9_]+|cu_lu_pivots_to_permutation|cu_threefry2x32(_ffi)?"
)

_INPUT = re.compile(r"^\s*([a-z]+[0-9]*)\s*(?:\[\s*([^\]]*)\])?\s*$")
_DTYPES = ("float32", "float16", "bfloat16", "int32", "int8", "int16", "uint8", "uint32", "bool")
_HEADER = struct.Struct("!I")
_CUSTOM_CALL = re.compile(r"custom_call\s*@([\w.$-]+)|call_target_name\s*=\s*\"([^\"]*)\"")


class ExportRejected(ValueError):
    """An exported computation the trusted scorer refuses to run; the message says why, in one sentence."""


class MissingDerivative(ValueError):
    """A fit asked for a derivative the candidate does not have (`mode`: "forward" or "reverse"); a fitter that can
    take either mode catches it and takes the other."""

    def __init__(self, message: str, mode: str) -> None:
        super().__init__(message)
        self.mode = mode


def parse_input(spec: str) -> tuple[str, tuple[int | str, ...]]:
    """Returns (dtype name, dimensions) of an input specification; a dimension is an int or a symbol name.

    Example:
        >>> parse_input("float32[n, 9]")
        ('float32', ('n', 9))
    """
    match = _INPUT.match(spec)
    if match is None or match.group(1) not in _DTYPES:
        raise ValueError(f"input {spec!r} is not of the form 'float32', 'float32[8]' or 'int32[n, 9]' "
                         f"(dtypes: {', '.join(_DTYPES)}).")
    dims: list[int | str] = []
    for part in (match.group(2) or "").split(","):
        part = part.strip()
        if not part:
            continue
        if part.isdigit():
            dims.append(int(part))
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) and part not in (BATCH_DIMENSION, DIRECTIONS_DIMENSION):
            dims.append(part)
        else:
            raise ValueError(f"input {spec!r}: dimension {part!r} is neither a size nor a name "
                             f"(names other than {BATCH_DIMENSION!r} and {DIRECTIONS_DIMENSION!r}).")
    return match.group(1), tuple(dims)


def _abstract_arguments(parameters: Sequence[str], inputs: Sequence[str]):
    """Returns ((params, *inputs) as batched `jax.ShapeDtypeStruct`s, the symbolic number of tangent directions),
    sharing one symbolic scope."""
    import jax
    import jax.numpy as jnp
    from jax import export

    parsed = [parse_input(spec) for spec in inputs]
    symbols = [BATCH_DIMENSION, DIRECTIONS_DIMENSION] + sorted({d for _, dims in parsed for d in dims
                                                                if isinstance(d, str)})
    scope = export.SymbolicScope()
    dims_by_name = dict(zip(symbols, export.symbolic_shape(", ".join(symbols), scope=scope)))
    batch = dims_by_name[BATCH_DIMENSION]

    def struct(dtype: str, dims: Sequence[int | str]):
        shape = (batch, *(dims_by_name[d] if isinstance(d, str) else d for d in dims))
        return jax.ShapeDtypeStruct(shape, jnp.dtype(dtype))

    params = {name: struct("float32", ()) for name in parameters}
    return (params, *(struct(dtype, dims) for dtype, dims in parsed)), dims_by_name[DIRECTIONS_DIMENSION]


def _merge(args, chosen, inexact):
    """Returns `args` with its floating-point entries replaced, in order, by `chosen`."""
    chosen = iter(chosen)
    return [next(chosen) if is_inexact else arg for arg, is_inexact in zip(args, inexact)]


def _inexact(dtype) -> bool:
    import jax.numpy as jnp

    return bool(jnp.issubdtype(dtype, jnp.inexact))


# ------------------------------------------------------------------------------------- the tracing sandbox side
def export_candidate(candidate: types.ModuleType, *, function_name: str, parameters: Sequence[str],
                     inputs: Sequence[str], platforms: Sequence[str] = ("cpu",)) -> dict[str, Any]:
    """Traces the candidate's evolved function with abstract inputs and returns it exported, base64-encoded.

    Runs in the tracing sandbox, the only place where candidate Python runs. No data is passed: only the names of
    the declared parameters and the shapes and dtypes of the other arguments. Three computations are exported,
    each batched over the symbolic leading dimension: the function, its forward derivative (JVP: the tangents of
    the floating-point results, given those of the floating-point arguments) and its reverse derivative (VJP).

    Args:
        candidate: the candidate's module.
        function_name: the evolved function, e.g. "agent".
        parameters: the names the candidate declared in PARAMS (read by the engine, not by the candidate).
        inputs: the task's input specifications, one per argument after `params`.
        platforms: what to lower for ("cpu", "cuda"): the trusted scorer's platform.

    Returns:
        {"exported": base64 text of the three serialized computations (a derivative that cannot be traced is
        empty) and the reasons for missing ones, "timings": {"trace": s}}.
    """
    import jax
    from jax import export

    started = time.perf_counter()
    function = getattr(candidate, function_name)
    abstract, number_of_directions = _abstract_arguments(parameters, inputs)
    leaves, tree = jax.tree.flatten(abstract)
    inexact = [_inexact(leaf.dtype) for leaf in leaves]

    def flat(*args):
        return jax.tree.leaves(function(*jax.tree.unflatten(tree, args)))

    def differentiable(args):
        """Returns `flat` as a function of the floating-point arguments (returning the floating-point results), and
        those arguments."""
        def partial(*chosen):
            chosen = iter(chosen)
            full = [next(chosen) if is_inexact else arg for arg, is_inexact in zip(args, inexact)]
            return [out for out in flat(*full) if _inexact(out.dtype)]
        return partial, [arg for arg, is_inexact in zip(args, inexact) if is_inexact]

    def jvp(*args):
        """The results, then their tangents along each of `directions` tangents of the arguments: the primal is
        computed once and its linearization applied to every direction."""
        outputs, linear = jax.linearize(lambda *chosen: flat(*_merge(args[:len(leaves)], chosen, inexact)),
                                        *[arg for arg, is_inexact in zip(args[:len(leaves)], inexact) if is_inexact])
        along = jax.vmap(lambda *tangents: [t for t, o in zip(linear(*tangents), outputs) if _inexact(o.dtype)])
        return [*outputs, *along(*args[len(leaves):])]

    def vjp(*args):
        partial, variables = differentiable(args[:len(leaves)])
        outputs, pullback = jax.vjp(partial, *variables)
        return pullback(list(args[len(leaves):len(leaves) + len(outputs)]))

    lower = functools.partial(export.export, platforms=tuple(platforms))
    primal = lower(jax.jit(jax.vmap(function)))(*abstract)
    variables = [leaf for leaf, is_inexact in zip(leaves, inexact) if is_inexact]
    outputs = [jax.ShapeDtypeStruct(aval.shape, aval.dtype) for aval in primal.out_avals if _inexact(aval.dtype)]
    parts, problems = [primal.serialize()], {}
    # A model may be differentiable one way only (lax.while_loop has no reverse mode): a derivative that cannot be
    # traced is left out, with the reason, and only a scorer that asks for it fails.
    directions = [jax.ShapeDtypeStruct((leaf.shape[0], number_of_directions, *leaf.shape[1:]), leaf.dtype)
                  for leaf in variables]
    for what, derivative, arguments in (("forward", jvp, [*leaves, *directions]), ("reverse", vjp, [*leaves, *outputs])):
        try:
            parts.append(lower(jax.jit(jax.vmap(derivative)))(*arguments).serialize())
        except Exception as error:  # whatever JAX raises while differentiating the candidate's code
            parts.append(b"")
            problems[what] = f"{type(error).__name__}: {error}"[:500]
    parts.append(json.dumps(problems).encode())
    blob = b"".join(_HEADER.pack(len(part)) + part for part in parts)
    return {"exported": base64.b64encode(blob).decode("ascii"), "timings": {"trace": time.perf_counter() - started}}


# ------------------------------------------------------------------------------------- the trusted scorer side
def custom_call_targets(exported) -> list[str]:
    """Returns the target names of every custom call in an exported computation's StableHLO."""
    text = exported.mlir_module()
    return sorted({a or b for a, b in _CUSTOM_CALL.findall(text)})


def check_exported(exported, *, what: str, in_avals: Sequence[Any], in_tree=None) -> None:
    """Raises ExportRejected unless `exported` takes the expected arguments and can only compute.

    Checked: one device, no effects, custom calls only from ALLOWED_CUSTOM_CALLS, the argument structure and
    each argument's shape and dtype, and results with the leading batch dimension.
    """
    if exported.nr_devices != 1:
        raise ExportRejected(f"the candidate's {what} is for {exported.nr_devices} devices; expected 1.")
    if exported.ordered_effects or exported.unordered_effects:
        effects = [str(e) for e in (*exported.ordered_effects, *exported.unordered_effects)]
        raise ExportRejected(f"the candidate's {what} has side effects ({', '.join(effects)[:200]}); only pure "
                             "computations are scored (no callbacks, no printing).")
    bad = [t for t in custom_call_targets(exported) if not ALLOWED_CUSTOM_CALLS.fullmatch(t)]
    if bad:
        raise ExportRejected(f"the candidate's {what} calls {', '.join(bad)[:200]}, which runs code outside the "
                             "computation (a host callback or an unknown kernel); only pure JAX computations are "
                             "scored.")
    if in_tree is not None and exported.in_tree != in_tree:
        raise ExportRejected(f"the candidate's {what} takes arguments {exported.in_tree}; expected {in_tree}.")
    if len(exported.in_avals) != len(in_avals):
        raise ExportRejected(f"the candidate's {what} takes {len(exported.in_avals)} arrays; expected "
                             f"{len(in_avals)}.")
    for index, (aval, want) in enumerate(zip(exported.in_avals, in_avals)):
        if aval.dtype != want.dtype or str(aval.shape) != str(want.shape):
            raise ExportRejected(f"argument {index} of the candidate's {what} is {aval.str_short()}; expected "
                                 f"{want.dtype}{list(want.shape)}.")
    for aval in exported.out_avals:
        if not aval.shape or str(aval.shape[0]) != BATCH_DIMENSION:
            raise ExportRejected(f"a result of the candidate's {what} is {aval.str_short()}; expected a leading "
                                 f"'{BATCH_DIMENSION}' dimension.")


def prepare() -> None:
    """Loads, before the scoring worker forks candidates' processes, what lowering an exported computation loads
    on first use without starting a JAX backend (which must not start before a fork).

    That is the CPU backend's LAPACK kernels, which jaxlib takes from SciPy: imported by the first candidate's
    process instead, after it gave up its uid, they fail to import where Python lives in a folder only root
    reads (a pyenv under /root) and bubblewrap is missing.
    """
    import importlib

    try:
        importlib.import_module("scipy.linalg")
    except ImportError:  # jaxlib then does without it
        pass


def load_candidate(blob: bytes | str, *, function_name: str, parameters: Mapping[str, Sequence[float]],
                   inputs: Sequence[str], constants: Mapping[str, float] | None = None) -> CandidateFunction:
    """Returns the callable the task's score receives, rebuilt from an exported candidate.

    Args:
        blob: `export_candidate`'s "exported" (base64 text) or the raw bytes.
        function_name: the evolved function's name (shown in messages).
        parameters: name -> (low, high) as the engine read them from the candidate's PARAMS.
        inputs: the task's input specifications.
        constants: name -> value of the literals the engine lifted into extra parameters
            (`engine/constants.py`), when the candidate was exported that way; they are passed to every call.

    Raises:
        ExportRejected: the bytes do not deserialize, or `check_exported` refuses them.
    """
    import jax
    from jax import export

    if isinstance(blob, str):
        try:
            blob = base64.b64decode(blob.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError) as error:
            raise ExportRejected(f"the candidate's exported computation is not valid base64 ({error}).") from None
    parts, view = [], memoryview(blob)
    while len(view) >= _HEADER.size and len(parts) < 4:
        (size,) = _HEADER.unpack(view[:_HEADER.size])
        parts.append(bytes(view[_HEADER.size:_HEADER.size + size]))
        view = view[_HEADER.size + size:]
    if len(parts) != 4 or len(view) or not parts[0]:
        raise ExportRejected("the candidate's exported computation is not a computation, its two derivatives and "
                             "the reasons for missing ones.")
    try:
        problems = {str(k): str(v)[:500] for k, v in json.loads(parts[3].decode("utf-8")).items()}
    except (ValueError, AttributeError) as error:
        raise ExportRejected(f"the candidate's exported computation is malformed ({error}).") from None
    loaded = []
    for what, part in zip(("computation", "forward derivative", "reverse derivative"), parts[:3]):
        if not part:
            loaded.append(None)
            continue
        try:
            loaded.append(export.deserialize(bytearray(part)))
        except Exception as error:  # malformed bytes from the tracing sandbox raise anything; all are rejections
            raise ExportRejected(f"the candidate's {what} does not deserialize "
                                 f"({type(error).__name__}: {str(error)[:200]}).") from None
    primal, forward, backward = loaded
    constants = dict(constants or {})
    names = tuple(parameters) + tuple(constants)
    abstract, number_of_directions = _abstract_arguments(names, inputs)
    leaves, tree = jax.tree.flatten(abstract)
    check_exported(primal, what="computation", in_avals=leaves, in_tree=jax.tree.structure((abstract, {})))
    inexact = tuple(_inexact(leaf.dtype) for leaf in leaves)
    variables = [leaf for leaf, is_inexact in zip(leaves, inexact) if is_inexact]
    directions = [jax.ShapeDtypeStruct((leaf.shape[0], number_of_directions, *leaf.shape[1:]), leaf.dtype)
                  for leaf in variables]
    outputs = [aval for aval in primal.out_avals if _inexact(aval.dtype)]
    along = [jax.ShapeDtypeStruct((a.shape[0], number_of_directions, *a.shape[1:]), a.dtype) for a in outputs]

    def signature(avals):
        return [(str(a.dtype), str(a.shape)) for a in avals]

    if forward is not None:
        check_exported(forward, what="forward derivative", in_avals=[*leaves, *directions])
        if signature(forward.out_avals) != signature([*primal.out_avals, *along]):
            raise ExportRejected("the candidate's forward derivative does not match its computation's results.")
    if backward is not None:
        check_exported(backward, what="reverse derivative", in_avals=[*leaves, *outputs])
        if signature(backward.out_avals) != signature(variables):
            raise ExportRejected("the candidate's reverse derivative does not match its computation's arguments.")
    functions = _Functions(primal, forward, backward, tree, inexact,
                           tuple(_inexact(aval.dtype) for aval in primal.out_avals), problems)
    return CandidateFunction(function_name, {n: (float(lo), float(hi)) for n, (lo, hi) in parameters.items()},
                             functions, [parse_input(spec)[0] for spec in inputs], constants)


# Set while a forward-mode derivative is traced that no reverse pass will transpose (see `forward_only`).
_FORWARD_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("forward_only", default=False)


@contextlib.contextmanager
def forward_only() -> Iterator[None]:
    """Within the block, a forward derivative of a candidate (`jax.jvp`, `jax.jacfwd`) evaluates its results and
    tangents in one exported call instead of two. Use it only around forward-mode code: a reverse-mode derivative
    (`jax.grad`, `jax.vjp`) taken inside the block fails.

    Example:
        >>> with forward_only():
        ...     grad, value = jax.jacfwd(lambda z: (loss(z), loss(z)), has_aux=True)(z)
    """
    token = _FORWARD_ONLY.set(True)
    try:
        yield
    finally:
        _FORWARD_ONLY.reset(token)


# Candidates with lifted constants, and the values a compiled program traces them with (see `constants_as`).
_LIFTED: weakref.WeakSet = weakref.WeakSet()
_BOUND: contextvars.ContextVar[Mapping[int, Any]] = contextvars.ContextVar("bound_constants", default={})


def lifted_constants() -> list[CandidateFunction]:
    """Returns the live candidates of this process whose literals were lifted into constants, in a stable order."""
    return sorted(_LIFTED, key=lambda candidate: candidate._serial)


@contextlib.contextmanager
def constants_as(values: Mapping[CandidateFunction, Any]) -> Iterator[None]:
    """Within the block, each candidate in `values` reads its constants from the given array (e.g. a tracer, an
    argument of the program being traced) instead of its own values; see `CandidateFunction.constants`.

    Example:
        >>> candidates = lifted_constants()
        >>> def program(constants, z, data):
        ...     with constants_as(dict(zip(candidates, constants))):
        ...         return objective(z, data)
        >>> jax.jit(program)([c.constants for c in candidates], z, data)   # one compile for any constants
    """
    token = _BOUND.set({**_BOUND.get(), **{id(candidate): array for candidate, array in values.items()}})
    try:
        yield
    finally:
        _BOUND.reset(token)


class CandidateFunction:
    """A candidate's evolved function, rebuilt from its exported computation; call it as the original.

    `candidate(params, *inputs)` takes a mapping with (at least) the declared parameters and the task's inputs,
    and works under jit, vmap, lax.scan, jvp and grad (first derivatives), and eval_shape.

    Attributes:
        __name__: the evolved function's name, e.g. "agent".
        PARAMS: name -> (low, high), the candidate's declared free parameters.
        problems: "forward" or "reverse" -> why that derivative could not be exported (lax.while_loop has no
            reverse mode); empty when both were. A fitter that can take either mode picks one that exists.
    """

    _count = 0

    def __init__(self, name: str, declared: Mapping[str, tuple[float, float]], functions: _Functions,
                 input_dtypes: Sequence[str], constants: Mapping[str, float] | None = None) -> None:
        import numpy as np

        self.__name__ = name
        self.PARAMS = dict(declared)
        self._names = tuple(declared)
        self._input_dtypes = tuple(input_dtypes)
        self._functions = functions
        self.problems = dict(functions.problems)
        self._constant_names = tuple(constants or {})
        #: the lifted literals' values, float32 (n,); empty when none were lifted
        self.constants = np.asarray([float(v) for v in (constants or {}).values()], np.float32)
        CandidateFunction._count += 1
        self._serial = CandidateFunction._count
        if self._constant_names:
            _LIFTED.add(self)

    def __call__(self, params: Mapping[str, Any], *inputs: Any):
        import jax
        import jax.numpy as jnp

        if len(inputs) != len(self._input_dtypes):
            raise TypeError(f"{self.__name__} takes params and {len(self._input_dtypes)} inputs; "
                            f"got {len(inputs)} inputs.")
        missing = [name for name in self._names if name not in params]
        if missing:
            raise KeyError(f"{self.__name__} needs the parameters {missing}.")
        declared = {name: jnp.asarray(params[name], jnp.float32) for name in self._names}
        if self._constant_names:
            values = _BOUND.get().get(id(self), self.constants)
            declared.update({name: jnp.asarray(values[i], jnp.float32) for i, name in enumerate(self._constant_names)})
        cast = [jnp.asarray(value, dtype) for value, dtype in zip(inputs, self._input_dtypes)]
        leaves = jax.tree.leaves((declared, *cast))
        outputs = _candidate_p.bind(*leaves, functions=self._functions, kind="primal", rank=0, directions=False)
        return jax.tree.unflatten(self._functions.primal.out_tree, outputs)

    def __repr__(self) -> str:
        return f"<exported candidate {self.__name__}({', '.join(self._names)})>"


# ------------------------------------------------------------------------------- one primitive, three computations
class _Functions:
    """The three exported computations of one candidate; hashed by identity (a primitive's static parameter)."""

    def __init__(self, primal, forward, backward, in_tree, inexact_in: tuple[bool, ...],
                 inexact_out: tuple[bool, ...], problems: Mapping[str, str]) -> None:
        self.primal, self.forward, self.backward = primal, forward, backward
        self.in_tree, self.inexact_in, self.inexact_out = in_tree, inexact_in, inexact_out
        self.problems = dict(problems)

    def call(self, kind: str, args: Sequence[Any]) -> list[Any]:
        """Calls one exported computation on flat arguments that all carry one leading batch dimension."""
        import jax

        if kind == "primal":
            return jax.tree.leaves(self.primal.call(*jax.tree.unflatten(self.in_tree, args)))
        derivative, what = (self.backward, "reverse") if kind == "vjp" else (self.forward, "forward")
        if derivative is None:
            raise MissingDerivative(f"the candidate cannot be differentiated in {what} mode, which this task's fit "
                                    f"needs: {self.problems.get(what, 'no derivative was exported')}", what)
        outs = list(derivative.call(*args))
        return outs[len(self.inexact_out):] if kind == "jvp" else outs


def _impl(*args, functions: _Functions, kind: str, rank: int, directions: bool):
    """Evaluates one computation on arguments with `rank` leading batch dimensions (all the same sizes).

    A forward derivative's tangents carry one more axis after those, the tangent directions, when `directions`;
    without it they get a single direction here.
    """
    import jax.numpy as jnp

    n = len(functions.inexact_in)
    args = list(args)
    single = kind in ("jvp", "jvp_full") and not directions
    if single:
        args[n:] = [jnp.expand_dims(t, rank) for t in args[n:]]
    batch = jnp.shape(args[0])[:rank]
    size = 1
    for dim in batch:
        size *= dim
    outs = functions.call(kind, [jnp.reshape(a, (size, *jnp.shape(a)[rank:])) for a in args])
    outs = [jnp.reshape(out, (*batch, *jnp.shape(out)[1:])) for out in outs]
    if not single:
        return outs
    primal = len(functions.inexact_out) if kind == "jvp_full" else 0  # results without a directions axis
    return outs[:primal] + [jnp.squeeze(out, rank) for out in outs[primal:]]


def _abstract_eval(*avals, functions: _Functions, kind: str, rank: int, directions: bool):
    import jax

    if kind == "jvp" and not directions and functions.forward is None:
        # reverse mode traces the forward derivative only to transpose it into the exported VJP: its tangents have
        # the shapes of the inexact results, so a candidate without a forward derivative (custom_vjp) still has one
        primal = _abstract_eval(*avals[:len(functions.inexact_in)], functions=functions, kind="primal", rank=rank,
                                directions=False)
        return [aval for aval, inexact in zip(primal, functions.inexact_out) if inexact]
    shapes = jax.eval_shape(functools.partial(_impl, functions=functions, kind=kind, rank=rank,
                                              directions=directions),
                            *[jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals])
    return [jax.core.ShapedArray(s.shape, s.dtype) for s in shapes]


def _batch(args, dims, *, functions: _Functions, kind: str, rank: int, directions: bool):
    """vmap: one more batch rank (each batched axis moved to the front, the unbatched arguments broadcast); or, for
    a forward derivative batched only in its tangents (`jax.jacfwd`), tangent directions that share one primal."""
    import jax.numpy as jnp

    n = len(functions.inexact_in)
    size = next(jnp.shape(a)[d] for a, d in zip(args, dims) if d is not None)  # None: not batched
    if kind in ("jvp", "jvp_full") and not directions and all(d is None for d in dims[:n]):
        tangents = [jnp.moveaxis(t, d, rank) if d is not None else
                    jnp.broadcast_to(jnp.expand_dims(t, rank), (*jnp.shape(t)[:rank], size, *jnp.shape(t)[rank:]))
                    for t, d in zip(args[n:], dims[n:])]
        outs = _candidate_p.bind(*args[:n], *tangents, functions=functions, kind=kind, rank=rank, directions=True)
        primal = len(functions.inexact_out) if kind == "jvp_full" else 0  # the same for every direction
        return outs, [None] * primal + [rank] * (len(outs) - primal)
    moved = [jnp.broadcast_to(a, (size, *jnp.shape(a))) if d is None else jnp.moveaxis(a, d, 0)
             for a, d in zip(args, dims)]
    outs = _candidate_p.bind(*moved, functions=functions, kind=kind, rank=rank + 1, directions=directions)
    return outs, [0] * len(outs)


def _jvp(primals, tangents, *, functions: _Functions, kind: str, rank: int, directions: bool):
    """Forward derivative of the candidate: the exported JVP, linear in the tangents (see `_transpose`)."""
    import jax
    from jax.interpreters import ad

    if kind != "primal":
        raise NotImplementedError("candidates are differentiable once (no derivatives of derivatives).")
    outs = [jax.core.ShapedArray(a.shape, a.dtype) for a in _abstract_eval(
        *[jax.typeof(p) for p in primals], functions=functions, kind="primal", rank=rank, directions=False)]
    variables = [ad.instantiate_zeros(t) for t, is_inexact in zip(tangents, functions.inexact_in) if is_inexact]

    def zero(value):
        aval = value if isinstance(value, jax.core.ShapedArray) else jax.typeof(value)
        return ad.Zero(aval.to_tangent_aval())

    if not variables:
        values = _candidate_p.bind(*primals, functions=functions, kind="primal", rank=rank, directions=False)
        return values, [zero(o) for o in outs]
    if _FORWARD_ONLY.get():
        # one call gives the results and their tangents; only where no reverse pass will transpose it
        both = _candidate_p.bind(*primals, *variables, functions=functions, kind="jvp_full", rank=rank,
                                 directions=False)
        outs, linear = both[:len(outs)], iter(both[len(outs):])
    else:
        outs = _candidate_p.bind(*primals, functions=functions, kind="primal", rank=rank, directions=False)
        linear = iter(_candidate_p.bind(*primals, *variables, functions=functions, kind="jvp", rank=rank,
                                        directions=False))
    return outs, [next(linear) if is_inexact else zero(o) for o, is_inexact in zip(outs, functions.inexact_out)]


def _transpose(cotangents, *args, functions: _Functions, kind: str, rank: int, directions: bool):
    """Reverse derivative: the transpose of the JVP in its tangents is the exported VJP."""
    from jax.interpreters import ad

    n = len(functions.inexact_in)
    primals = args[:n]
    if kind != "jvp" or directions or any(ad.is_undefined_primal(p) for p in primals):
        raise NotImplementedError("only the candidate's derivative in its tangents can be transposed.")
    outputs = [ad.instantiate_zeros(c) for c in cotangents]
    grads = _candidate_p.bind(*primals, *outputs, functions=functions, kind="vjp", rank=rank, directions=False)
    return [None] * n + list(grads)


def _register():
    from jax.extend.core import Primitive
    from jax.interpreters import ad, batching, mlir

    primitive = Primitive("exported_candidate")
    primitive.multiple_results = True
    primitive.def_impl(_impl)
    primitive.def_abstract_eval(_abstract_eval)
    mlir.register_lowering(primitive, mlir.lower_fun(_impl, multiple_results=True))
    batching.primitive_batchers[primitive] = _batch
    ad.primitive_jvps[primitive] = _jvp
    ad.primitive_transposes[primitive] = _transpose
    return primitive


class _LazyPrimitive:
    """The primitive, registered on first use (importing this module must not import JAX: see zygote.py)."""

    _primitive = None

    def bind(self, *args, **params):
        if _LazyPrimitive._primitive is None:
            _LazyPrimitive._primitive = _register()
        return _LazyPrimitive._primitive.bind(*args, **params)


_candidate_p = _LazyPrimitive()
