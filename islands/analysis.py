"""What the database computes from a candidate's source: its canonical hash and its complexity, from one parse."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from islands.candidate_model import CandidateModel

__all__ = ["SourceFacts", "SourceAnalyser"]


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """Attributes: canonical_hash, num_params and ast_size (see islands.candidate_model.CandidateModel)."""

    canonical_hash: str
    num_params: int
    ast_size: int


class SourceAnalyser:
    """Computes `SourceFacts`, remembering the last few sources (a candidate is looked up, then registered).

    It keeps the facts, not the parsed trees, so that a thousand remembered sources cost little memory.
    """

    def __init__(self, function_name: str = "", capacity: int = 1024) -> None:
        self.function_name = function_name
        self.capacity = capacity
        self._cache: OrderedDict[str, SourceFacts] = OrderedDict()

    def __call__(self, source: str) -> SourceFacts:
        facts = self._cache.get(source)
        if facts is not None:
            self._cache.move_to_end(source)
            return facts
        model = CandidateModel.parse(source, self.function_name)
        size = model.complexity
        facts = SourceFacts(model.canonical_hash, size.num_params, size.ast_size)
        self._cache[source] = facts
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return facts
