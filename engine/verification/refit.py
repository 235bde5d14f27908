"""`Refitter`: refits many variants of one program through the sandbox, with one warm worker pool.

Simplification and ablation refit a program again and again with one part changed. Each variant is evaluated
exactly like a candidate of the search (`engine/search/evaluation.py`): its Python is traced in the sandbox, and the
trusted scoring stage fits the exported computation on `train` and scores the held-out split. Only the pool is
kept open between calls, so workers do not pay their start (importing JAX, receiving the splits) per variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from engine.search.evaluation import build_context, make_job
from engine.search.session import Prepared
from sandbox.pool import evaluate_many
from sandbox.results import RunResult

__all__ = ["Refitter"]


class Refitter:
    """Evaluates module sources on one held-out split with the task's scorer; close it (or use `with`).

    Example:
        >>> with Refitter(prepared, heldout="selection") as refitter:
        ...     full, knocked_out = refitter.evaluate([source, variant])

    Args:
        prepared: the task, its splits and the run's configuration.
        heldout: "selection" (what the search ranks by; simplification decides on it) or "test" (verify only).
        workers: variants evaluated at the same time.
        seed: the fitter's seed; by default the run's seed, so a variant is fitted like the program it came from.
        hidden_paths: files candidates must not see, e.g. the run's database.
    """

    def __init__(self, prepared: Prepared, *, heldout: str, workers: int = 2, seed: int | None = None,
                 hidden_paths: Sequence[str | Path] = ()) -> None:
        from sandbox.runners import make_runner

        config = prepared.config.sandbox.model_copy(update={"runner": "local", "num_workers": workers})
        seed = prepared.config.run.seed if seed is None else seed
        context = build_context(prepared.task, prepared.splits, heldout=heldout, seed=seed)
        self._function_name = prepared.task.function_name
        self._runner = make_runner(config, context, hidden_paths=[str(path) for path in hidden_paths])
        self._next_job_id = 0
        self.evaluations = 0

    def evaluate(self, sources: Sequence[str]) -> list[RunResult]:
        """Returns one result per source, in order; failed variants come back with their outcome, never raise."""
        first = self._next_job_id
        self._next_job_id += len(sources)
        jobs = [make_job(first + position, source, self._function_name) for position, source in enumerate(sources)]
        results = evaluate_many(self._runner, jobs)
        self.evaluations += len(sources)
        return results

    def close(self) -> None:
        self._runner.close()

    def __enter__(self) -> Refitter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
