"""Parameter recovery: draw parameter sets near a fit, and say how well a refit finds them again.

A task's `verify` simulates data from parameter sets near the fitted ones, refits the candidate to each
simulated data set with its own inner loop, and reports per parameter the Pearson correlation between the
generating and the recovered values. These two functions are the parts every task shares:

    rng = np.random.default_rng(seed)
    generating = [perturbed_parameters(spec, fitted[g], spread=0.3, rng=rng) for g in groups]
    ...simulate from each, refit, collect `recovered` (one dict per set)...
    recovery, pairs = recovery_table(spec, generating, recovered)
    # sets whose refit failed are left out of the table; say how many: failed_sets(spec, recovered)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from engine.fit.params import ParamSpec

__all__ = ["failed_sets", "perturbed_parameters", "recovery_table"]


def perturbed_parameters(spec: ParamSpec, fitted: Mapping[str, float], *, spread: float,
                         rng: np.random.Generator) -> dict[str, float]:
    """Returns a parameter set near `fitted`: `spread` x N(0, 1) added to each in unconstrained (logit) units.

    Drawing in unconstrained space keeps every value inside its bounds and spreads parameters near a bound as
    far, in the model's terms, as those in the middle.
    """
    z = np.asarray(spec.unconstrain(fitted)) + spread * rng.standard_normal(spec.size)
    return {name: float(value) for name, value in spec.constrain(jnp.asarray(z, jnp.float32)).items()}


def recovery_table(spec: ParamSpec, generating: Sequence[Mapping[str, float]],
                   recovered: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], dict[str, list[list[float]]]]:
    """Returns ({name: Pearson r of generating vs recovered values}, {name: [[generating, recovered], ...]}).

    A set whose refit failed (any recovered value not finite, e.g. the NaNs of `fit_per_group(...,
    allow_failed_groups=True)`) is left out of both; `failed_sets` lists them. r is NaN for a parameter whose
    generating or recovered values do not vary, or when fewer than 3 sets remain.
    """
    if len(generating) != len(recovered):
        raise ValueError(f"{len(generating)} generating parameter sets but {len(recovered)} recovered ones.")
    failed = set(failed_sets(spec, recovered))
    kept = [k for k in range(len(generating)) if k not in failed]
    recovery, pairs = {}, {}
    for name in spec.names:
        truth = np.array([float(generating[k][name]) for k in kept])
        estimate = np.array([float(recovered[k][name]) for k in kept])
        pairs[name] = [[float(a), float(b)] for a, b in zip(truth, estimate)]
        varies = len(kept) >= 3 and np.std(truth) > 0 and np.std(estimate) > 0
        recovery[name] = float(np.corrcoef(truth, estimate)[0, 1]) if varies else float("nan")
    return recovery, pairs


def failed_sets(spec: ParamSpec, recovered: Sequence[Mapping[str, float]]) -> list[int]:
    """Returns the indices of the recovered parameter sets with a value that is not finite (failed refits)."""
    return [k for k, params in enumerate(recovered) if not all(np.isfinite(float(params[n])) for n in spec.names)]
