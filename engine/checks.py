"""Scoring fixed models outside a search: `discover task check` (seed and baselines) and the test-split scores
that `discover verify` and reports show. Everything goes through the same sandbox path as a run."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from engine.evaluation import build_context
from engine.seed_check import seed_drift
from engine.session import Prepared, prepare
from sandbox.results import Job, Outcome, RunResult

__all__ = ["CheckRow", "check_task", "evaluate_sources", "reference_models"]


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One model's result in a task check."""

    name: str
    kind: str
    outcome: str
    score: float | None
    train_score: float | None
    num_params: int
    wall_s: float
    error: str


def evaluate_sources(
    prepared: Prepared,
    models: Mapping[str, tuple[str, str | None]],
    *,
    heldout: str,
    workers: int = 2,
    timeout_s: float | None = None,
    seed: int | None = None,
) -> dict[str, RunResult]:
    """Evaluates named models through the sandbox; returns name -> result.

    Args:
        models: name -> (module source, scoring entry "path.py:function" or None for the task's score).
        heldout: the split scored: "selection" (what the search sees) or "test" (reports only).
        timeout_s: a wall-clock limit other than the task's `timeout_s` (e.g. for verification).
        seed: the seed passed to the scoring entry (its fitter's random starts); by default the run's seed.
    """
    from sandbox.pool import make_runner

    config = prepared.config.sandbox.model_copy(update={"runner": "local", "num_workers": workers})
    seed = prepared.config.run.seed if seed is None else seed
    context = build_context(prepared.task, prepared.splits, heldout=heldout, seed=seed)
    if timeout_s is not None:
        context = replace(context, limits=replace(context.limits, timeout_s=timeout_s))
    names = list(models)
    results: dict[str, RunResult] = {}
    for entry in dict.fromkeys(models[name][1] or context.entry for name in names):
        runner = make_runner(config, replace(context, entry=entry))
        try:
            waiting = {}
            for job_id, name in enumerate(names):
                source, model_entry = models[name]
                if (model_entry or context.entry) == entry:
                    runner.submit(Job(job_id=job_id, source=source))
                    waiting[job_id] = name
            while waiting:
                for result in runner.results(1.0):
                    if result.job_id in waiting:
                        results[waiting.pop(result.job_id)] = result
        finally:
            runner.close()
    return results


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b.*")


def error_line(error: str) -> str:
    """Returns the line of an error text that says what went wrong: its last "SomeError: message" line.

    JAX appends a note about filtered frames after the exception, so the last line is not always the one.
    """
    lines = [line for line in error.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line
    return lines[-1] if lines else ""


def reference_models(prepared: Prepared) -> dict[str, tuple[str, str, str | None]]:
    """Returns name -> (kind, source, scoring entry or None) for the seed and every baseline of the task."""
    task = prepared.task
    models: dict[str, tuple[str, str, str | None]] = {"seed": ("seed", task.seed_source, None)}
    for name, source in task.baseline_sources().items():
        baseline = task.file.baselines[name]
        entry = str(task.resolve_entry(baseline.score, f"baselines.{name}.score")) if baseline.score else None
        models[name] = (baseline.kind, source, entry)
    return models


def check_task(task_yaml: Path, *, split: str = "selection", workers: int = 2) -> tuple[list[CheckRow], list[str]]:
    """Evaluates the seed and every baseline; returns the rows and a list of problems (empty when all is well).

    Problems: a model that does not run, or a seed whose score is off the task's `seed_score` by more than its
    tolerance (a scoring change without a version bump).
    """
    from engine.fit import read_params

    prepared = prepare(task_yaml)
    task = prepared.task
    models = reference_models(prepared)
    results = evaluate_sources(
        prepared, {name: (source, entry) for name, (_, source, entry) in models.items()}, heldout=split, workers=workers
    )
    rows, problems = [], []
    for name, (kind, source, _) in models.items():
        result = results[name]
        try:
            num_params = len(read_params(source, task.function_name).names)
        except ValueError:
            num_params = -1
        ok = result.outcome is Outcome.OK
        rows.append(
            CheckRow(
                name=name,
                kind=kind,
                outcome=result.outcome.name,
                score=result.scores.get("score") if ok else None,
                train_score=result.scores.get("train_score") if ok else None,
                num_params=num_params,
                wall_s=result.wall_time_s,
                error=result.error,
            )
        )
        if not ok:
            problems.append(f"{name}: {result.outcome.name}: {error_line(result.error) or result.outcome.value}")
    seed_row = rows[0]
    if split == "selection" and seed_row.score is not None:  # seed_score is a selection-split score
        drift = seed_drift(seed_row.score, task.file.seed_score, task.file.seed_score_tolerance, "task.yaml")
        if drift is not None:
            problems.append(f"seed: {drift.message(task.yaml_path)}")
    return rows, problems
