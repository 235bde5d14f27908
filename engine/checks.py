"""`discover task check`: validate a task and score its seed and baselines through the same path as a run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from engine.evaluation import build_context
from engine.loop import evaluate_once
from engine.session import prepare
from sandbox.results import Job, Outcome

__all__ = ["CheckRow", "check_task"]


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


def check_task(task_yaml: Path, *, split: str = "selection", workers: int = 2) -> tuple[list[CheckRow], list[str]]:
    """Evaluates the seed and every baseline; returns the rows and a list of problems (empty when all is well).

    Problems: a model that does not run, or a seed whose score is off the task's `seed_score` by more than its
    tolerance (a scoring change without a version bump).
    """
    from engine.fit import read_params
    from sandbox.pool import make_runner

    prepared = prepare(task_yaml, None, {"sandbox": {"runner": "local", "num_workers": workers}})
    task = prepared.task
    context = build_context(task, prepared.splits, heldout=split, seed=prepared.config.run.seed)
    # name -> (kind, source, scoring entry); a baseline may bring its own scoring entry (e.g. a GRU ceiling).
    models = {"seed": ("seed", task.seed_source, context.entry)}
    for name, source in task.baseline_sources().items():
        baseline = task.file.baselines[name]
        entry = str(task.resolve_entry(baseline.score, f"baselines.{name}.score")) if baseline.score else context.entry
        models[name] = (baseline.kind, source, entry)
    results, job_ids = {}, {}
    for entry in dict.fromkeys(model[2] for model in models.values()):
        runner = make_runner(prepared.config.sandbox, replace(context, entry=entry))
        try:
            submitted = set()
            for job_id, (name, (_, source, model_entry)) in enumerate(models.items()):
                if model_entry == entry:
                    runner.submit(Job(job_id=job_id, source=source))
                    job_ids[job_id] = name
                    submitted.add(job_id)
            while not submitted <= set(results):
                for result in runner.results(1.0):
                    results[result.job_id] = result
        finally:
            runner.close()
    for job_id, name in sorted(job_ids.items()):
        kind, source, _ = models[name]
        result = results[job_id]
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
            problems.append(f"{name}: {result.outcome.name}: {result.error.strip().splitlines()[-1] if result.error.strip() else result.outcome.value}")
    seed_row = rows[0]
    expected = task.file.seed_score
    if split == "selection" and expected is not None and seed_row.score is not None:
        if abs(seed_row.score - expected) > task.file.seed_score_tolerance:
            problems.append(
                f"seed scores {seed_row.score:.4f} but task.yaml says seed_score: {expected} "
                f"(tolerance {task.file.seed_score_tolerance}); if scoring changed, bump `version` and update seed_score."
            )
    return rows, problems
