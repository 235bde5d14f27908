"""From what the engine hands over to what is stored and to what an island holds."""

from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from islands.analysis import SourceFacts
from islands.config import IslandsConfig
from islands.errors import IslandsError
from islands.program import Candidate, Program
from islands.sampling import Member
from islands.store import ProgramSummary

__all__ = ["SEED_ISLAND_ID", "MemberRule", "program_from_candidate"]

SEED_ISLAND_ID = -1  # the island_id stored for the seed, which is registered on every island

_REDUCTIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": statistics.fmean,
    "median": statistics.median,
    "min": min,
    "max": max,
    "last": lambda values: values[-1],
}


def program_from_candidate(
    candidate: Candidate, program_id: int, island_id: int, facts: SourceFacts, created_at: float
) -> Program:
    """Returns the program to store for a candidate, in plain JSON-ready values (a NaN score becomes None)."""
    score = None if candidate.score is None or math.isnan(candidate.score) else float(candidate.score)
    return Program(
        id=program_id,
        island_id=island_id,
        source=candidate.source,
        parent_ids=tuple(int(i) for i in candidate.parent_ids),
        outcome=str(candidate.outcome),
        score=score,
        scores_per_test=_floats("scores_per_test", candidate.scores_per_test),
        error=candidate.error,
        fitted_params=_plain(candidate.fitted_params),
        timings=_floats("timings", candidate.timings),
        extra_scores=_plain(candidate.extra_scores),
        behaviour=None if candidate.behaviour is None else tuple(float(x) for x in candidate.behaviour),
        proposer=candidate.proposer,
        tokens=int(candidate.tokens),
        cost_usd=float(candidate.cost_usd),
        canonical_hash=facts.canonical_hash,
        num_params=facts.num_params,
        ast_size=facts.ast_size,
        created_at=created_at,
    )


class MemberRule:
    """Decides whether a stored program may be a prompt example and, if so, its cluster key and cluster score.

    A program failed unless its outcome is "OK" and both its score and its cluster score (the reduction of
    its per-test scores, or its score when it has none) are finite. Failed programs are never prompt examples.
    """

    def __init__(self, config: IslandsConfig) -> None:
        self._reduce = _REDUCTIONS[config.cluster_score]
        self._digits = config.signature_decimals
        self._by_behaviour = config.cluster_by == "behaviour"

    def __call__(self, summary: ProgramSummary) -> Member | None:
        """Returns the island member for a stored program, or None when it failed."""
        score = summary.score
        if summary.outcome != "OK" or score is None or not math.isfinite(score):
            return None
        scores = summary.scores_per_test or {"score": score}
        cluster_score = float(self._reduce(list(scores.values())))
        if not math.isfinite(cluster_score):
            return None
        if self._by_behaviour and summary.behaviour is not None:
            key: tuple = ("behaviour", summary.behaviour)
        else:
            digits = self._digits
            key = ("scores", tuple([round(scores[name], digits) for name in sorted(scores)]))
        return Member(summary.id, key, cluster_score, summary.source_length)


def _floats(field: str, values: Mapping[str, Any]) -> dict[str, float]:
    try:
        return {str(name): float(value) for name, value in values.items()}
    except (TypeError, ValueError) as error:
        raise IslandsError(
            f"candidate.{field} must map names to numbers; found {dict(values)!r} ({error}). "
            "Leave out entries that have no value."
        ) from error


def _plain(value: Any) -> Any:
    """Converts numpy values, tuples and mappings into JSON-ready Python values (lists, dicts, floats)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
