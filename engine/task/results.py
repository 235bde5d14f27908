"""What a task's score returns: one typed record, with the same fields for every task.

A task's `score(candidate, ...)` returns a `TaskResult`. Its fitted parameters are always grouped,
`{group: {name: value}}`: a task that fits each subject, monkey, neuron or cell on its own has one group per
unit, and a pooled fit has the single group `POOLED`. So the engine finds a parameter by its declared name in
every task (a bound is a bound in each group), and nothing parses names such as "drift_B" or "gain[unit]".

The record crosses from the trusted scoring worker to the engine as plain data (`record()`), and the engine reads
it back with `from_record`, which also accepts the plain mapping a third-party entry may return, with flat
`fitted_params` ({name: value}) read as one pooled group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["POOLED", "TaskResult", "TaskVerification", "describe_fitted", "fitted_groups", "grouped_params",
           "posterior_groups", "pooled_params"]

POOLED = "all"  # the group of a fit that pools all data
_RESERVED = frozenset({"score", "train_score", "scores_per_test", "fitted_params", "timings"})


@dataclass(frozen=True)
class TaskResult:
    """A candidate's evaluation by its task.

    Attributes:
        score: held-out score on the split the engine asked for (higher is better); a non-finite score makes the
            candidate INVALID_OUTPUT.
        fitted_params: {group: {parameter: value}}; one group, `POOLED`, for a pooled fit.
        train_score: the same score on the training data at the fitted parameters, or None.
        scores_per_test: named scores of parts of the held-out data (a session, a neuron), or per test split.
        timings: seconds per phase, with keys ending in "_s": "compile_s", "fit_s", "score_s".
        extra_scores: other finite numbers worth storing (e.g. "train_log_likelihood", a per-monkey
            log-likelihood).
        details: other JSON-able values (e.g. "behaviour", a vector the program database uses for diversity).
    """

    score: float
    fitted_params: Mapping[str, Mapping[str, float]]
    train_score: float | None = None
    scores_per_test: Mapping[str, float] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    extra_scores: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for group, values in self.fitted_params.items():
            if not isinstance(group, str) or not isinstance(values, Mapping):
                raise TypeError(f"fitted_params must be {{group: {{name: value}}}}; group {group!r} maps to "
                                f"{type(values).__name__} (use pooled_params or grouped_params).")
        for phase in self.timings:
            if not str(phase).endswith("_s"):
                raise ValueError(f"timing {phase!r}: timing keys end in '_s' (compile_s, fit_s, score_s).")
        clashes = _RESERVED & (set(self.extra_scores) | set(self.details))
        if clashes:
            raise ValueError(f"{', '.join(sorted(clashes))}: a TaskResult field, not an extra score or detail.")

    def record(self) -> dict[str, Any]:
        """The plain mapping that crosses the process boundary (floats, lists and dicts only)."""
        record: dict[str, Any] = {"score": _number(self.score)}
        if self.train_score is not None:
            record["train_score"] = _number(self.train_score)
        record.update({str(key): _number(value) for key, value in self.extra_scores.items()})
        record["scores_per_test"] = {str(key): _number(value) for key, value in self.scores_per_test.items()}
        record["fitted_params"] = {group: {str(name): _number(value) for name, value in values.items()}
                                   for group, values in self.fitted_params.items()}
        record["timings"] = {str(key): _number(value) for key, value in self.timings.items()}
        record.update(self.details)
        return record

    @classmethod
    def from_record(cls, scores: Mapping[str, float], details: Mapping[str, Any],
                    timings: Mapping[str, float] = {}) -> TaskResult:  # noqa: B006 - read only
        """Reads what the scoring worker split into finite scores, other details and timings."""
        extra = {key: value for key, value in scores.items() if key not in ("score", "train_score")}
        rest = {key: value for key, value in details.items() if key not in _RESERVED}
        return cls(
            score=float(scores.get("score", math.nan)),
            fitted_params=fitted_groups(details.get("fitted_params")),
            train_score=scores.get("train_score"),
            scores_per_test={str(k): float(v) for k, v in (details.get("scores_per_test") or {}).items()
                             if isinstance(v, (int, float))},
            timings=dict(timings),
            extra_scores=extra,
            details=rest,
        )

    def values_of(self, name: str) -> list[float]:
        """The fitted values of one parameter, one per group that has it."""
        return [float(values[name]) for values in self.fitted_params.values() if name in values]


@dataclass(frozen=True)
class TaskVerification:
    """What a task's `verify(candidate, train, heldout, seed, posterior=False)` returns (`discover verify`).

    Attributes:
        score: the task's score of the candidate on the held-out split it was given (the test split).
        fitted_params: {group: {name: value}}, as in `TaskResult`.
        recovery: the engine's parameter recovery around the fit (`engine.fit.parameter_recovery`), or None.
        figures: the task's figures (`engine/verification/figures.py` lists their form).
        checks: the task's pass/fail checks, each {"name", "passed", "detail"}.
        posterior: with `posterior=True`, `engine.fit.posterior_summary` (or `combine_posteriors` of several
            groups, or an SMC-ABC posterior record): {"posterior": {...}, "posterior_diagnostics": {...}}. The
            record holds the posterior grouped like `fitted_params`, {group: {name: [5 %, 50 %, 95 %]}}; one
            fit's flat {name: [...]} becomes the group `POOLED`.
    """

    score: float
    fitted_params: Mapping[str, Mapping[str, float]]
    recovery: Any = None
    figures: Sequence[Mapping[str, Any]] = ()
    checks: Sequence[Mapping[str, Any]] = ()
    posterior: Mapping[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The plain mapping that crosses the process boundary."""
        record: dict[str, Any] = {"score": _number(self.score),
                                  "fitted_params": TaskResult(0.0, self.fitted_params).record()["fitted_params"]}
        if self.recovery is not None:
            record.update(self.recovery.record())
        record["figures"] = list(self.figures)
        record["checks"] = list(self.checks)
        record.update(self.posterior)
        if "posterior" in record:
            record["posterior"] = posterior_groups(record["posterior"])
        return record


def pooled_params(params: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """{POOLED: params} for a fit that pools all data (a `FitResult.params`)."""
    return {POOLED: {name: float(value) for name, value in params.items()}}


def grouped_params(params: Mapping[str, Sequence[float] | np.ndarray], groups: Sequence[str]
                   ) -> dict[str, dict[str, float]]:
    """{group: {name: value}} from per-group arrays (a `GroupFitResult.params`: name -> (n_groups,))."""
    return {str(group): {name: float(np.asarray(values)[index]) for name, values in params.items()}
            for index, group in enumerate(groups)}


def fitted_groups(stored: Any) -> dict[str, dict[str, Any]]:
    """Reads stored fitted parameters as {group: {name: value}}: flat {name: value} (a database written before
    results were grouped, or a plain entry) is one pooled group; anything else is no parameters."""
    if not isinstance(stored, Mapping):
        return {}
    if stored and all(isinstance(values, Mapping) for values in stored.values()):
        return {str(group): dict(values) for group, values in stored.items()}
    flat = {str(name): value for name, value in stored.items() if not isinstance(value, Mapping)}
    return {POOLED: flat} if flat else {}


def posterior_groups(stored: Any) -> dict[str, dict[str, Any]]:
    """Reads a posterior entry as {group: {name: [5 %, 50 %, 95 %]}}: one fit's flat {name: [...]} (and records
    written before posteriors were grouped, whose names carry the group: "drift_B") is one pooled group."""
    if not isinstance(stored, Mapping) or not stored:
        return {}
    if all(isinstance(values, Mapping) for values in stored.values()):
        return {str(group): dict(values) for group, values in stored.items()}
    return {POOLED: {str(name): value for name, value in stored.items() if not isinstance(value, Mapping)}}


def describe_fitted(stored: Any) -> str:
    """One line for people and prompts: "alpha=0.326, beta=8.21" for one group; for several, each parameter's
    median and range over the groups, "drift=0.31 [0.12, 0.55] (median [range] over 12 groups)"."""
    groups = fitted_groups(stored)
    if len(groups) == 1:
        (values,) = groups.values()
        return ", ".join(f"{name}={_short(value)}" for name, value in values.items())
    names = list(dict.fromkeys(name for values in groups.values() for name in values))
    parts = []
    for name in names:
        numbers = [float(v[name]) for v in groups.values() if isinstance(v.get(name), (int, float))
                   and math.isfinite(v[name])]
        if numbers:
            parts.append(f"{name}={np.median(numbers):.3g} [{min(numbers):.3g}, {max(numbers):.3g}]")
    return ", ".join(parts) + f" (median [range] over {len(groups)} groups)" if parts else ""


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "..."


def _number(value: Any) -> Any:
    """A Python float for numpy/jax scalars (JSON cannot hold them); other values unchanged."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
