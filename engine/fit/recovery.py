"""Parameter recovery and posterior-predictive draws: the checks every task's `verify` runs the same way.

A task's `verify` supplies only what is its own, a simulator of one data row and a refit of stacked rows, and
`parameter_recovery` runs the loop: draw parameter sets near each group's fit, simulate a row like that group's
training data from each, refit all rows, and correlate generating with recovered values per parameter.

    def simulate(params, row, rng):            # one simulated data set shaped like `row` (one group's data)
        counts = rng.poisson(np.asarray(rates(params, row["stimulus"])))
        return {**row, "spike_count": counts}

    refit = refit_by_likelihood(neg_log_likelihood, spec, restarts=4, max_steps=200, optimizer="lbfgs")
    recovery = parameter_recovery(spec, fitted, rows, simulate, refit, n_sets=6, spread=0.3, seed=seed)
    return {"score": ..., **recovery.record(), "figures": ...}

`posterior_predictive(fitted, rows, simulate, n_draws=10, seed=seed)` uses the same simulator to draw replicate data
sets at the fitted parameters, from which a task computes the summaries its figures compare with the data.

An angle (a preferred direction in degrees, a phase) is compared on the circle: pass its period, e.g.
`periods={"pref_deg": 360.0}`, and its entry is the circular correlation instead of Pearson's r, so 359 deg
recovered as 1 deg counts as recovered. The lower-level pieces, `perturbed_parameters`, `recovery_table` and
`failed_sets`, stay public for checks that do not fit this loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
import numpy as np

from engine.fit.params import ParamSpec

__all__ = ["Recovery", "circular_correlation", "failed_sets", "parameter_recovery", "perturbed_parameters",
           "posterior_predictive", "recovery_table", "refit_by_likelihood"]

Row = Mapping[str, Any]  # one group's data (a subject, a cell, a neuron): arrays without the group axis
Simulate = Callable[[dict[str, float], Row, np.random.Generator], Mapping[str, Any]]
Refit = Callable[[dict[str, np.ndarray]], Any]
Unmeasurable = Callable[[Mapping[str, Any]], str]
"""(one simulated row) -> why the task's score cannot measure it (e.g. "fires at 640 Hz, past the 125 Hz the score
measures"), or "" when it can."""


@dataclass(frozen=True, slots=True)
class Recovery:
    """The outcome of `parameter_recovery`.

    Attributes:
        recovery: name -> Pearson r (circular correlation for the names in `circular`) of generating vs recovered
            values over the sets whose refit succeeded; NaN with fewer than 3 such sets or no variation.
        pairs: name -> [[generating, recovered], ...] of those sets.
        failed_sets: indices of the sets whose refit failed (a recovered value that is not finite).
        circular: the parameters compared on the circle.
        generating, recovered: every set's parameters, in set order (set k was drawn around group k mod n_groups).
        redrawn: set index -> why each discarded draw of it could not be measured (`parameter_recovery`'s
            `unmeasurable`), for the sets drawn more than once.
        unmeasured_sets: the sets that kept an unmeasurable draw, after the most redraws (they stay in the table).
    """

    recovery: dict[str, float]
    pairs: dict[str, list[list[float]]]
    failed_sets: list[int]
    circular: list[str]
    generating: list[dict[str, float]] = field(repr=False)
    recovered: list[dict[str, float]] = field(repr=False)
    redrawn: dict[int, list[str]] = field(default_factory=dict)
    unmeasured_sets: list[int] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """Returns the keys `discover verify` reads from a task's verify: recovery, recovery_pairs, ..."""
        return {"recovery": self.recovery, "recovery_pairs": self.pairs, "recovery_failed_sets": self.failed_sets,
                "recovery_circular": self.circular,
                "recovery_redrawn": {str(k): list(reasons) for k, reasons in self.redrawn.items()},
                "recovery_unmeasured_sets": self.unmeasured_sets}


def parameter_recovery(spec: ParamSpec, fitted: Sequence[Mapping[str, float]], rows: Sequence[Row],
                       simulate: Simulate, refit: Refit, *, n_sets: int, spread: float, seed: int,
                       periods: Mapping[str, float] | None = None, unmeasurable: Unmeasurable | None = None,
                       max_redraws: int = 10) -> Recovery:
    """Simulates data from parameter sets near each group's fit, refits them, and correlates per parameter.

    Args:
        spec: the candidate's free parameters.
        fitted: per group, the fitted parameters {name: value} (one entry for a task without groups).
        rows: per group, the data a simulated set imitates (its design: stimuli, trial counts, masks), usually the
            group's training row; `simulate` decides what it keeps.
        simulate: (params, row, rng) -> one simulated row, with the keys and shapes the refit expects.
        refit: (stacked rows, each key with a leading set axis) -> the recovered parameters, either one
            {name: value} per set or a fit result whose `.params` maps name -> (n_sets,) values (e.g.
            `refit_by_likelihood`'s `fit_per_group`).
        n_sets: number of parameter sets; set k is drawn around group k mod len(fitted).
        spread: s.d. of the normal step added to each parameter in unconstrained (logit) units.
        seed: seeds the parameter draws and the rng given to `simulate`; `refit` keeps its own seed.
        periods: name -> period for parameters that are angles.
        unmeasurable: (simulated row) -> why the task's score cannot measure those data, or "". A set whose data it
            cannot measure is drawn again, up to max_redraws times, from a generator of its own (the other sets
            stay as drawn without it), and `Recovery.redrawn` says why. The rule sees only the simulated data,
            never a refit: it decides which sets the score can tell apart before any is recovered.
        max_redraws: the most redraws of one set; after them its last draw is kept and listed in unmeasured_sets.

    Returns:
        the correlations, pairs, failed and redrawn sets (see `Recovery`).
    """
    if len(fitted) != len(rows):
        raise ValueError(f"{len(fitted)} fitted parameter sets but {len(rows)} data rows; give one of each per group.")
    rng = np.random.default_rng(seed)
    generating, simulated, redrawn, unmeasured = [], [], {}, []
    for k in range(n_sets):
        group = k % len(fitted)
        params = perturbed_parameters(spec, fitted[group], spread=spread, rng=rng)
        row = simulate(params, rows[group], rng)
        reason = unmeasurable(row) if unmeasurable is not None else ""
        while reason:
            if len(redrawn.get(k, [])) == max_redraws:
                unmeasured.append(k)
                break
            redrawn.setdefault(k, []).append(reason)
            own = np.random.default_rng([seed, k, len(redrawn[k])])
            params = perturbed_parameters(spec, fitted[group], spread=spread, rng=own)
            row = simulate(params, rows[group], own)
            reason = unmeasurable(row)
        generating.append(params)
        simulated.append(row)
    stacked = {key: np.stack([np.asarray(row[key]) for row in simulated]) for key in simulated[0]}
    recovered = _parameter_sets(refit(stacked), spec, n_sets)
    recovery, pairs = recovery_table(spec, generating, recovered, periods=periods)
    return Recovery(recovery, pairs, failed_sets(spec, recovered), sorted(periods or {}), generating, recovered,
                    redrawn, unmeasured)


def refit_by_likelihood(neg_log_likelihood: Callable, spec: ParamSpec, **fit_options: Any) -> Refit:
    """Returns a refit for `parameter_recovery` that fits each simulated set by `fit_per_group`.

    Args:
        neg_log_likelihood: (params, row) -> scalar NLL of one row, as the task's score uses.
        fit_options: restarts, max_steps, optimizer, seed, ... as in `fit_per_group`. A set with no finite restart
            comes back as NaN (a failed set) instead of failing the check.
    """
    from engine.fit.gradient import fit_per_group

    return lambda stacked: fit_per_group(neg_log_likelihood, spec, stacked, allow_failed_groups=True, **fit_options)


def posterior_predictive(fitted: Sequence[Mapping[str, float]], rows: Sequence[Row], simulate: Simulate, *,
                         n_draws: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Returns, per group, `n_draws` data sets simulated at its fitted parameters, stacked on a leading draw axis.

    Args:
        fitted, rows, simulate: as in `parameter_recovery`; the rows are those the model is checked against
            (usually the held-out ones).
        n_draws: replicate data sets per group.
        seed: seeds the simulations.
    """
    if len(fitted) != len(rows):
        raise ValueError(f"{len(fitted)} fitted parameter sets but {len(rows)} data rows; give one of each per group.")
    rng = np.random.default_rng(seed)
    draws = []
    for params, row in zip(fitted, rows):
        replicates = [simulate(dict(params), row, rng) for _ in range(n_draws)]
        draws.append({key: np.stack([np.asarray(r[key]) for r in replicates]) for key in replicates[0]})
    return draws


def _parameter_sets(refitted: Any, spec: ParamSpec, n_sets: int) -> list[dict[str, float]]:
    """Returns one {name: value} per set from what a refit returned (sets of values, or a result with .params)."""
    by_name = getattr(refitted, "params", None)
    if isinstance(by_name, Mapping):
        sets = [{name: float(np.asarray(by_name[name])[k]) for name in spec.names} for k in range(n_sets)]
    else:
        sets = [{name: float(values[name]) for name in spec.names} for values in refitted]
    if len(sets) != n_sets:
        raise ValueError(f"the refit returned {len(sets)} parameter sets for {n_sets} simulated ones.")
    return sets


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
