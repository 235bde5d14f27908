"""Mutants of the bandit programs still run as JAX code: finite (2,) logits and an (8,) state."""

from __future__ import annotations

import pytest
from tests.unit.engine.test_mutator_programs import PROGRAMS, SEED, run_once

from engine.proposers.base import PromptContext, Shot
from engine.proposers.mutator import MutationProposer

PRIMITIVES = ("jnp.exp", "jnp.tanh", "jax.nn.sigmoid", "jnp.log1p", "jnp.abs", "jnp.square")
N_MUTANTS = 150
MIN_RUNNABLE_FRACTION = 0.9  # the target is 0.7; all 150 ran for both parent sets when this was written


def runnable_fraction(sources: tuple[str, ...]) -> tuple[float, list[str]]:
    proposer = MutationProposer()
    shots = tuple(Shot(program_id=i, source=s, score=float(i)) for i, s in enumerate(sources))
    failures = []
    for seed in range(N_MUTANTS):
        mutation = proposer.mutate(PromptContext(0, "agent", shots, "", len(shots), PRIMITIVES, seed=seed))
        problem = run_once(mutation.source, seed)
        if problem:
            failures.append(f"seed {seed} {mutation.notes}: {problem}")
    return 1.0 - len(failures) / N_MUTANTS, failures


@pytest.mark.slow
@pytest.mark.parametrize("sources", [(SEED,), PROGRAMS], ids=["seed", "crossover"])
def test_most_mutants_run(sources: tuple[str, ...]) -> None:
    fraction, failures = runnable_fraction(sources)
    assert fraction >= MIN_RUNNABLE_FRACTION, failures
