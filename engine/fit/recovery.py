"""Parameter recovery: draw parameter sets near a fit, and say how well a refit finds them again.

A task's `verify` simulates data from parameter sets near the fitted ones, refits the candidate to each
simulated data set with its own inner loop, and reports per parameter the Pearson correlation between the
generating and the recovered values. These two functions are the parts every task shares:

    rng = np.random.default_rng(seed)
    generating = [perturbed_parameters(spec, fitted[g], spread=0.3, rng=rng) for g in groups]
    ...simulate from each, refit, collect `recovered` (one dict per set)...
    recovery, pairs = recovery_table(spec, generating, recovered)
    # sets whose refit failed are left out of the table; say how many: failed_sets(spec, recovered)

An angle (a preferred direction in degrees, a phase) is compared on the circle: pass its period, e.g.
`recovery_table(spec, generating, recovered, periods={"pref_deg": 360.0})`, and its entry is the circular
correlation instead of Pearson's r, so 359 deg recovered as 1 deg counts as recovered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from engine.fit.params import ParamSpec

__all__ = ["circular_correlation", "failed_sets", "perturbed_parameters", "recovery_table"]


def perturbed_parameters(spec: ParamSpec, fitted: Mapping[str, float], *, spread: float,
                         rng: np.random.Generator) -> dict[str, float]:
    """Returns a parameter set near `fitted`: `spread` x N(0, 1) added to each in unconstrained (logit) units.

    Drawing in unconstrained space keeps every value inside its bounds and spreads parameters near a bound as
    far, in the model's terms, as those in the middle.
    """
    z = np.asarray(spec.unconstrain(fitted)) + spread * rng.standard_normal(spec.size)
    return {name: float(value) for name, value in spec.constrain(jnp.asarray(z, jnp.float32)).items()}


def recovery_table(spec: ParamSpec, generating: Sequence[Mapping[str, float]],
                   recovered: Sequence[Mapping[str, float]], *, periods: Mapping[str, float] | None = None,
                   ) -> tuple[dict[str, float], dict[str, list[list[float]]]]:
    """Returns ({name: r of generating vs recovered values}, {name: [[generating, recovered], ...]}).

    r is Pearson's, or for a parameter named in `periods` (name -> period, e.g. 360.0 for an angle in degrees)
    the circular correlation, with each recovered angle written in its pair as the equivalent value nearest the
    generating one (1 deg recovered for 359 deg is paired as 361). A set whose refit failed (any recovered value
    not finite, e.g. the NaNs of `fit_per_group(..., allow_failed_groups=True)`) is left out of both;
    `failed_sets` lists them. r is NaN for a parameter whose generating or recovered values do not vary, or
    when fewer than 3 sets remain.
    """
    if len(generating) != len(recovered):
        raise ValueError(f"{len(generating)} generating parameter sets but {len(recovered)} recovered ones.")
    periods = dict(periods or {})
    unknown = sorted(set(periods) - set(spec.names))
    if unknown:
        raise ValueError(f"periods given for {unknown}, which are not parameters of the candidate {list(spec.names)}.")
    failed = set(failed_sets(spec, recovered))
    kept = [k for k in range(len(generating)) if k not in failed]
    recovery, pairs = {}, {}
    for name in spec.names:
        truth = np.array([float(generating[k][name]) for k in kept])
        estimate = np.array([float(recovered[k][name]) for k in kept])
        if name in periods:
            period = float(periods[name])
            estimate = truth + np.mod(estimate - truth + period / 2, period) - period / 2
            recovery[name] = circular_correlation(truth, estimate, period) if len(kept) >= 3 else float("nan")
        else:
            varies = len(kept) >= 3 and np.std(truth) > 0 and np.std(estimate) > 0
            recovery[name] = float(np.corrcoef(truth, estimate)[0, 1]) if varies else float("nan")
        pairs[name] = [[float(a), float(b)] for a, b in zip(truth, estimate)]
    return recovery, pairs


def circular_correlation(a: np.ndarray, b: np.ndarray, period: float) -> float:
    """Returns the circular correlation of two samples of angles (Jammalamadaka & SenGupta 2001, eq. 8.2.2).

    Args:
        a, b: (n,) values in the units of `period` (e.g. deg with period 360).
        period: the value at which the angle wraps.

    Returns:
        sum sin(a - mean a) sin(b - mean b) / sqrt(sum sin^2(a - mean a) sum sin^2(b - mean b)), with circular
        means; in [-1, 1], NaN when either sample does not vary on the circle.
    """
    theta = 2 * np.pi * np.asarray(a, float) / period
    phi = 2 * np.pi * np.asarray(b, float) / period
    sin_a = np.sin(theta - np.angle(np.mean(np.exp(1j * theta))))
    sin_b = np.sin(phi - np.angle(np.mean(np.exp(1j * phi))))
    denominator = np.sqrt(np.sum(sin_a**2) * np.sum(sin_b**2))
    return float(np.sum(sin_a * sin_b) / denominator) if denominator > 1e-12 else float("nan")


def failed_sets(spec: ParamSpec, recovered: Sequence[Mapping[str, float]]) -> list[int]:
    """Returns the indices of the recovered parameter sets with a value that is not finite (failed refits)."""
    return [k for k, params in enumerate(recovered) if not all(np.isfinite(float(params[n])) for n in spec.names)]
