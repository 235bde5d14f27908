"""Model comparison with statistics: paired differences over held-out units, bootstrap intervals, AIC and BIC.

A task's score returns `scores_per_test`: one held-out number per unit (a session, a subject, a neuron, a monkey
and coherence). Two models scored on the same split have the same units, so their difference is paired: unit by
unit, which removes what makes one session harder than another. `paired_difference` reports the mean of the
differences with a percentile bootstrap interval over units, and how many units the first model wins.

task.yaml's `per_test_units` says what a unit's number is: "likelihood_per_trial" (a geometric-mean choice
probability, compared as its log) or "loglik_per_trial" (compared as it is); anything else is compared on the
task's own scale and labelled "score".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["PairedDifference", "paired_difference", "unit_values", "information_criteria", "difference_label",
           "BOOTSTRAP_SAMPLES", "INTERVAL_LEVEL"]

BOOTSTRAP_SAMPLES = 4000
INTERVAL_LEVEL = 0.95
TIE_NATS = 1e-6  # differences this small are float32 rounding of the same fit: a unit won by less is a tie


@dataclass(frozen=True, slots=True)
class PairedDifference:
    """Model A minus model B over the units both were scored on (per-trial log-likelihood, or the task's scale).

    Attributes:
        mean: mean over units of A's value minus B's.
        low, high: the percentile bootstrap interval of that mean (resampling units), at `level`.
        wins: units where A is higher by more than TIE_NATS; n: units compared.
    """

    mean: float
    low: float
    high: float
    wins: int
    n: int
    level: float = INTERVAL_LEVEL

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def describe(self, unit_word: str = "units") -> str:
        """Returns e.g. "+0.0123 [0.0040, 0.0210], wins 31 of 40 units"."""
        return (f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}], wins {self.wins} of {self.n} {unit_word}")


def unit_values(scores_per_test: Mapping[str, float], per_test_units: str) -> dict[str, float]:
    """Returns unit -> the number compared: the per-trial log-likelihood, or the task's score where it is not one.

    Args:
        scores_per_test: a result's held-out score per unit.
        per_test_units: task.yaml's `per_test_units` ("likelihood_per_trial", "loglik_per_trial" or "score").
    """
    values = {}
    for unit, value in scores_per_test.items():
        if value is None or not math.isfinite(value):
            continue
        if per_test_units == "likelihood_per_trial":
            if value <= 0:
                continue
            value = math.log(value)
        values[str(unit)] = float(value)
    return values


def difference_label(per_test_units: str) -> str:
    """Returns what a paired difference is measured in, for tables."""
    if per_test_units in ("likelihood_per_trial", "loglik_per_trial"):
        return "held-out log-likelihood per trial (nats)"
    return "held-out score"


def paired_difference(a: Mapping[str, float], b: Mapping[str, float], *, samples: int = BOOTSTRAP_SAMPLES,
                      level: float = INTERVAL_LEVEL, seed: int = 0) -> PairedDifference | None:
    """Returns A minus B over their shared units with a paired percentile bootstrap interval; None under 2 units.

    Args:
        a, b: unit -> value (from `unit_values`), e.g. session -> held-out log-likelihood per trial.
        samples: bootstrap resamples of the units.
        level: the interval's coverage, e.g. 0.95.
        seed: seed of the resampling, so a report shows the same interval each time.
    """
    units = sorted(set(a) & set(b))
    if len(units) < 2:
        return None
    differences = np.array([a[unit] - b[unit] for unit in units], dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(units), size=(samples, len(units)))
    means = differences[draws].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return PairedDifference(mean=float(differences.mean()), low=float(low), high=float(high),
                            wins=int(np.sum(differences > TIE_NATS)), n=len(units), level=level)


def information_criteria(train_log_likelihood: float | None, num_fitted: int,
                         num_observations: float | None) -> dict[str, float] | None:
    """Returns {"aic", "bic", "train_log_likelihood", "num_fitted", "num_observations"} on the training split.

    AIC = 2k - 2 log L and BIC = k log n - 2 log L, with k the fitted values (a parameter fitted per neuron counts
    once per neuron) and n the training observations (trials). None when the task does not report log L or n.
    """
    if train_log_likelihood is None or num_observations is None or not math.isfinite(train_log_likelihood) \
            or num_observations <= 0:
        return None
    k = int(num_fitted)
    return {
        "aic": 2.0 * k - 2.0 * train_log_likelihood,
        "bic": k * math.log(num_observations) - 2.0 * train_log_likelihood,
        "train_log_likelihood": float(train_log_likelihood),
        "num_fitted": k,
        "num_observations": float(num_observations),
    }
