"""Program records: what the engine registers and what the database returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class Candidate:
    """An evaluated candidate, as the engine hands it to the database.

    Attributes:
        source: the candidate's whole module source (parameter declarations and the evolved function).
        parent_ids: ids of the programs shown in the prompt that produced it (empty for the seed).
        island_id: the island whose prompt produced it (ignored for the seed).
        outcome: the sandbox outcome name, e.g. "OK", "TIMEOUT", "CRASHED".
        score: held-out selection score (higher is better); None when the candidate failed.
        scores_per_test: per-test scores whose rounded values form the cluster signature.
        error: the error text for failed candidates.
        fitted_params: parameter name -> fitted value(s).
        timings: seconds per phase (startup, compile, fit, score, propose, wall).
        extra_scores: other numbers worth keeping (train score, n_params, ...).
        behaviour: optional behaviour signature (rounded numbers) for behavioural clustering.
        proposer: which proposer wrote it ("seed", "mutator", "openai:gpt-x", ...).
        tokens: LLM tokens spent on it (prompt + completion); 0 for the mutator.
        cost_usd: LLM cost of it.
    """

    source: str
    parent_ids: tuple[int, ...] = ()
    island_id: int = 0
    outcome: str = "OK"
    score: float | None = None
    scores_per_test: Mapping[str, float] = field(default_factory=dict)
    error: str = ""
    fitted_params: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    extra_scores: Mapping[str, float] = field(default_factory=dict)
    behaviour: tuple[float, ...] | None = None
    proposer: str = "seed"
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Program:
    """A stored program: a candidate with its id, canonical hash, complexity and time of registration."""

    id: int
    island_id: int
    source: str
    parent_ids: tuple[int, ...]
    outcome: str
    score: float | None
    scores_per_test: Mapping[str, float]
    error: str
    fitted_params: Mapping[str, Any]
    timings: Mapping[str, float]
    extra_scores: Mapping[str, float]
    behaviour: tuple[float, ...] | None
    proposer: str
    tokens: int
    cost_usd: float
    canonical_hash: str
    num_params: int
    ast_size: int
    created_at: float
