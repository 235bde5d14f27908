"""What the database computes from a candidate's source: its canonical hash and its complexity, from one parse."""

from __future__ import annotations

import ast
from collections import OrderedDict
from dataclasses import dataclass

from islands.canonical import canonical_hash, canonical_hash_of_tree
from islands.complexity import complexity_of_tree

__all__ = ["SourceFacts", "SourceAnalyser"]


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """Attributes: canonical_hash (see islands.canonical), num_params and ast_size (see islands.complexity)."""

    canonical_hash: str
    num_params: int
    ast_size: int


class SourceAnalyser:
    """Computes `SourceFacts`, remembering the last few sources (a candidate is looked up, then registered)."""

    def __init__(self, function_name: str = "", capacity: int = 1024) -> None:
        self.function_name = function_name
        self.capacity = capacity
        self._cache: OrderedDict[str, SourceFacts] = OrderedDict()

    def __call__(self, source: str) -> SourceFacts:
        facts = self._cache.get(source)
        if facts is not None:
            self._cache.move_to_end(source)
            return facts
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            facts = SourceFacts(canonical_hash(source), num_params=0, ast_size=0)
        else:
            size = complexity_of_tree(tree, self.function_name)  # before hashing, which rewrites the tree
            facts = SourceFacts(canonical_hash_of_tree(tree), size.num_params, size.ast_size)
        self._cache[source] = facts
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return facts
