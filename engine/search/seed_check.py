"""Whether the seed still scores what its task says.

A task states what its seed scores (`seed_score` in task.yaml) and how far a correct setup may stray from it
(`seed_score_tolerance`). A seed outside that band means the scorer, the data or the environment changed while
the task still claims the same scoring `version`: scores from before and after would be compared as if they
were the same thing. `discover run` stops before it searches, and `discover task check` fails.

A resumed run compares the seed with the score it stored when the run began instead. The database already
refuses another task version or other data (islands.meta); an edited score.py or a new JAX between stopping a run
and resuming it is what only a fresh evaluation of the seed can see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from sandbox.results import RunResult
from engine.task.spec import DEFAULT_SEED_SCORE_TOLERANCE

__all__ = ["SeedDrift", "seed_drift", "seed_failure_message", "suggested_tolerance"]


@dataclass(frozen=True, slots=True)
class SeedDrift:
    """A seed score outside the band it was expected in.

    Attributes:
        found: what the seed scored now.
        expected: task.yaml's `seed_score`, or the score a resumed run stored when it began.
        tolerance: the task's `seed_score_tolerance` (score units, absolute).
        against: "task.yaml" or "database": where `expected` comes from.
    """

    found: float
    expected: float
    tolerance: float
    against: str

    @property
    def off_by(self) -> float:
        return abs(self.found - self.expected)

    def message(self, task_yaml: Path, db_path: Path | None = None) -> str:
        """Returns one sentence: what was expected, what was found, what probably changed and what to do."""
        if self.against == "database":
            return (
                f"{db_path or 'this run'}: the seed now scores {self.found:.4f}, but it scored {self.expected:.4f} "
                f"when this run began (tolerance ± {self.tolerance:g}, from {task_yaml}), so the scorer or the environment "
                f"(e.g. the JAX version) changed since and new scores would not be comparable with the stored ones; "
                f"go back to what the run began with, or start a new database (bumping version in task.yaml if "
                f"scoring changed on purpose)."
            )
        return (
            f"{task_yaml}: expected the seed to score {self.expected:g} ± {self.tolerance:g} (seed_score), "
            f"got {self.found:.4f}, so the scorer, the dataset or the environment (e.g. the JAX version) changed; "
            f"check that change, then update seed_score in task.yaml, or bump version if scoring changed on "
            f"purpose, before searching."
        )


def seed_drift(found: float, expected: float | None, tolerance: float, against: str) -> SeedDrift | None:
    """Returns the drift when `found` is more than `tolerance` away from `expected`; None when within it or when
    nothing is expected."""
    if expected is None:
        return None
    drift = SeedDrift(found=found, expected=expected, tolerance=tolerance, against=against)
    # The band's edges are inside it: 0.7752 against 0.7742 ± 0.001 differs by 0.0010000000000000009 in floats.
    return drift if not math.isfinite(found) or drift.off_by > tolerance + 1e-12 else None


def seed_failure_message(result: RunResult, task_yaml: Path, seed_py: Path) -> str:
    """Returns what to say when the seed itself does not evaluate: its outcome, its error and what to do."""
    error = result.error.strip()
    return (
        f"the seed program {seed_py} did not evaluate: {result.outcome.name} ({result.outcome.value})"
        + (f":\n{error}\n" if error else "; ")
        + f"Fix the seed or the task's score module; `discover eval {task_yaml} {seed_py}` shows the same result."
    )



def suggested_tolerance(scores: Sequence[float], center: float) -> float:
    """Returns a `seed_score_tolerance` for a seed that scored `scores` with several fit seeds, around `center`.

    Twice the largest distance from `center`, since a handful of fits shows only part of the spread (`discover run
    --seed N` must not stop on an ordinary fit), rounded up to one significant digit, and never below
    DEFAULT_SEED_SCORE_TOLERANCE, which absorbs seed_score's rounding and arithmetic that differs between machines.
    """
    spread = 2 * max((abs(score - center) for score in scores), default=0.0)
    if spread <= DEFAULT_SEED_SCORE_TOLERANCE:
        return DEFAULT_SEED_SCORE_TOLERANCE
    unit = 10.0 ** math.floor(math.log10(spread))
    return round(math.ceil(spread / unit - 1e-9) * unit, 12)
