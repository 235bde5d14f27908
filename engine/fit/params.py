"""Free parameters of a candidate: reading the `PARAMS` literal and mapping to and from unconstrained space.

A candidate declares its free parameters in the first statement of its evolved function (after the docstring):

    def agent(params, state, choice, reward):
        \"\"\"...\"\"\"
        PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}
        ...params["alpha"]...

`read_params` turns that literal into a `ParamSpec`; optimizers work on an unconstrained vector `z` and
`ParamSpec.constrain` maps it into the box, `low + (high - low) * sigmoid(z)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.fit.errors import FitError
# At the top, not inside the functions: a scoring worker imports what it needs before its limits apply, and then
# may not be able to import more (this module imports only the small candidate model, not the database).
from islands.candidate_model import CandidateModel, bounds_problem

if TYPE_CHECKING:
    import jax

__all__ = ["ParamSpec", "read_params"]


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """Names and box bounds of a candidate's free parameters, in declaration order.

    Attributes:
        names: parameter names, e.g. ("alpha", "beta").
        lows: lower bounds, same order as `names`.
        highs: upper bounds, same order as `names`; each strictly above its low.
    """

    names: tuple[str, ...]
    lows: tuple[float, ...]
    highs: tuple[float, ...]

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.lows) == len(self.highs)):
            raise FitError(
                f"ParamSpec has {len(self.names)} names, {len(self.lows)} lows and {len(self.highs)} highs; "
                "give one (low, high) pair per name."
            )
        if len(set(self.names)) != len(self.names):
            raise FitError(f"ParamSpec names must be unique; found {list(self.names)}.")
        for name, low, high in zip(self.names, self.lows, self.highs):
            _check_bounds(name, (low, high))

    @classmethod
    def from_bounds(cls, bounds: Mapping[str, tuple[float, float]]) -> ParamSpec:
        """Returns the spec of a `{"name": (low, high)}` mapping (the same form as a candidate's PARAMS)."""
        for name, pair in bounds.items():
            _check_bounds(name, pair)
        return cls(
            names=tuple(bounds),
            lows=tuple(float(pair[0]) for pair in bounds.values()),
            highs=tuple(float(pair[1]) for pair in bounds.values()),
        )

    @property
    def size(self) -> int:
        """Number of free parameters."""
        return len(self.names)

    def constrain(self, z: jax.Array) -> dict[str, jax.Array]:
        """Maps an unconstrained vector to constrained values, `low + (high - low) * sigmoid(z)`.

        Args:
            z: unconstrained values, shape (size,) (extra leading batch axes are allowed: (..., size)).

        Returns:
            dict name -> constrained value, each of shape z.shape[:-1] (a scalar for a (size,) vector).
        """
        import jax  # here, so that reading PARAMS (the engine's process) does not import JAX
        import jax.numpy as jnp

        batch_shape = (1,) * (z.ndim - 1) + (self.size,)
        lows = jnp.asarray(self.lows, dtype=z.dtype).reshape(batch_shape)
        highs = jnp.asarray(self.highs, dtype=z.dtype).reshape(batch_shape)
        values = lows + (highs - lows) * jax.nn.sigmoid(z)
        return {name: values[..., i] for i, name in enumerate(self.names)}

    def unconstrain(self, values: Mapping[str, float]) -> np.ndarray:
        """Returns the unconstrained vector (size,) that `constrain` maps to `values` (clipped just inside the box)."""
        missing = [name for name in self.names if name not in values]
        if missing:
            raise FitError(f"values lack {', '.join(missing)}; expected all of {', '.join(self.names)}.")
        z = np.empty(self.size)
        for i, (name, low, high) in enumerate(zip(self.names, self.lows, self.highs)):
            fraction = np.clip((float(values[name]) - low) / (high - low), 1e-6, 1 - 1e-6)
            z[i] = math.log(fraction) - math.log1p(-fraction)
        return z

    def at_bounds(self, values: Mapping[str, float], relative_tolerance: float = 1e-3) -> tuple[str, ...]:
        """Returns the names whose value lies within `relative_tolerance * (high - low)` of a bound (names missing
        from `values` are skipped)."""
        near = []
        for name, low, high in zip(self.names, self.lows, self.highs):
            if name not in values:
                continue
            margin = relative_tolerance * (high - low)
            if values[name] - low <= margin or high - values[name] <= margin:
                near.append(name)
        return tuple(near)


def _check_bounds(name: object, pair: object) -> None:
    problem = bounds_problem(name, pair)
    if problem:
        raise FitError(problem)


def read_params(source: str, function_name: str) -> ParamSpec:
    """Reads the `PARAMS = {"name": (low, high)}` literal that opens `function_name` in `source`.

    The literal must be the function's first statement (a docstring may precede it). Every `params["x"]`
    that the function reads must be declared there. `islands.candidate_model` reads the source; this turns
    what it found into a spec, or its problem into a FitError.

    Args:
        source: Python source of the candidate module.
        function_name: the evolved function, e.g. "agent".

    Returns:
        the declared parameters, in declaration order.

    Raises:
        FitError (a ValueError) with one sentence saying what is wrong.
    """
    model = CandidateModel.parse(source, function_name)
    if model.problem:
        raise FitError(model.problem)
    spec = ParamSpec.from_bounds(model.bounds)
    if model.undeclared_reads:
        raise FitError(
            f"{function_name} reads params[{model.undeclared_reads[0]!r}] but PARAMS declares only "
            f"{', '.join(spec.names)}; declare it in PARAMS or stop reading it."
        )
    return spec
