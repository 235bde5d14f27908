"""Scoring fixed models outside a search: `discover task check` (seed and baselines) and the test-split scores
that `discover verify` and reports show. Everything goes through the same sandbox path as a run."""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from engine.search.evaluation import build_context, make_job
from engine.search.seed_check import seed_drift, suggested_tolerance
from engine.search.session import Prepared, prepare
from sandbox.pool import evaluate_many
from sandbox.results import Outcome, RunResult
from engine.task.spec import TaskSpec

__all__ = [
    "CheckRow", "TaskCheck", "check_task", "evaluate_sources", "reference_models", "seed_score_findings", "error_line",
    "timeout_warning", "TIMEOUT_FRACTION",
]


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
    entry_options: Mapping[str, Any] | None = None,
) -> dict[str, RunResult]:
    """Evaluates named models through the sandbox; returns name -> result.

    Args:
        models: name -> (module source, scoring entry "path.py:function" or None for the task's score).
        heldout: the split scored: "selection" (what the search sees) or "test" (reports only).
        timeout_s: a wall-clock limit other than the task's `timeout_s` (e.g. for verification).
        seed: the seed passed to the scoring entry (its fitter's random starts); by default the run's seed.
        entry_options: keyword arguments for the entries other than the task's score (e.g. {"posterior": True}
            for its verify); the task's score gets its `score_options` instead.
    """
    from sandbox.runners import make_runner

    config = prepared.config.sandbox.model_copy(update={"runner": "local", "num_workers": workers})
    seed = prepared.config.run.seed if seed is None else seed
    context = build_context(prepared.task, prepared.splits, heldout=heldout, seed=seed)
    if timeout_s is not None:
        context = replace(context, limits=replace(context.limits, timeout_s=timeout_s))
    names = list(models)
    results: dict[str, RunResult] = {}
    options = prepared.task.file.score_options
    for entry in dict.fromkeys(models[name][1] or context.entry for name in names):
        entry_context = replace(context, entry=entry)
        if entry != context.entry:  # a baseline's own scorer or the task's verify: score_options are the score's
            payload = {k: v for k, v in context.payload.items() if k not in options}
            entry_context = replace(entry_context, payload={**payload, **(entry_options or {})})
        runner = make_runner(config, entry_context)
        try:
            mine = [(job_id, name) for job_id, name in enumerate(names) if (models[name][1] or context.entry) == entry]
            jobs = [make_job(job_id, models[name][0], prepared.task.function_name) for job_id, name in mine]
            results.update(zip([name for _, name in mine], evaluate_many(runner, jobs)))
        finally:
            runner.close()
    return results


#: The share of `limits.timeout_s` the seed may use before `task check` warns. Candidates usually declare more
#: parameters than the seed, and a fit takes longer with more of them (the bandit task's 4-parameter ground truth:
#: 2-3 times its 2-parameter seed), on more data and on a busier machine; a limit the seed only just meets ends
#: many candidates as TIMEOUT, which the search then learns nothing from.
TIMEOUT_FRACTION = 1 / 3


def limited_time_s(result: RunResult) -> float:
    """Seconds of a result that count against `limits.timeout_s`: the longer of its two stages (tracing, then
    fitting and scoring; each has the whole limit), less each worker's start (importing JAX and the scorer,
    receiving the data), which the warm workers of a run have done before."""
    timings = result.timings
    trace_s = timings.get("trace_wall", 0.0) - timings.get("trace_startup", 0.0)
    score_s = result.wall_time_s - timings.get("trace_wall", 0.0) - timings.get("startup", 0.0)
    return max(0.0, trace_s, score_s)


def timeout_warning(result: RunResult, timeout_s: float) -> str:
    """Returns a warning when the seed used more than TIMEOUT_FRACTION of `timeout_s`, saying what to set; else ""."""
    used_s = limited_time_s(result)
    if used_s <= TIMEOUT_FRACTION * timeout_s:
        return ""
    needed_s = 10 * math.ceil(used_s / TIMEOUT_FRACTION / 10)
    return (
        f"the seed took {used_s:.1f} s, more than a third of limits.timeout_s {timeout_s:g}: candidates with more "
        f"parameters fit for longer and would end as TIMEOUT; set limits.timeout_s to at least {needed_s} in "
        f"task.yaml (see Sizing limits in docs/tasks.md)."
    )


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


@dataclass(frozen=True, slots=True)
class TaskCheck:
    """What `discover task check` found.

    Attributes:
        rows: one per model, the seed first, each scored with the run's fit seed.
        problems: what fails the check, one line each; empty when everything checked passed.
        warnings: what passed but deserves a look, one line each.
        seed_scores: the seed's selection score per fit seed (run seed first); empty for the test split or a
            failed seed.
        fit_seeds: the fit seeds of `seed_scores`.
        suggested: task.yaml fields to set, e.g. {"seed_score": -0.4425, "seed_score_tolerance": 0.002}.
        timeout_s: the task's `limits.timeout_s`.
        seed_time_s: the seconds of the seed's evaluation that count against `timeout_s` (None if it failed).
    """

    rows: list[CheckRow]
    problems: list[str]
    warnings: list[str]
    seed_scores: list[float]
    fit_seeds: list[int]
    suggested: dict[str, float]
    timeout_s: float
    seed_time_s: float | None


def check_task(task_yaml: Path, *, split: str = "selection", workers: int = 2, fit_seeds: int = 3) -> TaskCheck:
    """Evaluates the seed and every baseline, and the seed again with more fit seeds; returns what it found.

    Problems: a model that does not run or whose output scoring rejects, a seed whose score is off the task's
    `seed_score` by more than its tolerance (a scoring change without a version bump), or a tolerance that the
    seed's own spread over fit seeds exceeds (`discover run --seed N` would stop on an ordinary fit).

    Args:
        fit_seeds: how many fit seeds the seed is scored with on the selection split: the run's seed, +1, ...
    """
    prepared = prepare(task_yaml)
    task = prepared.task
    models = reference_models(prepared)
    results = evaluate_sources(
        prepared, {name: (source, entry) for name, (_, source, entry) in models.items()}, heldout=split, workers=workers
    )
    rows = [_row(name, kind, source, results[name], task.function_name) for name, (kind, source, _) in models.items()]
    problems = [f"{row.name}: {row.outcome}: {error_line(row.error) or Outcome[row.outcome].value}"
                for row in rows if row.score is None]
    warnings: list[str] = []
    seed_row, timeout_s = rows[0], task.file.limits.timeout_s
    if seed_row.score is None:
        return TaskCheck(rows, problems, warnings, [], [], {}, timeout_s, None)
    slow = timeout_warning(results["seed"], timeout_s)
    if slow:
        warnings.append(slow)
    if split != "selection":  # seed_score is a selection-split score
        return TaskCheck(rows, problems, warnings, [], [], {}, timeout_s, limited_time_s(results["seed"]))

    run_seed = prepared.config.run.seed
    by_fit_seed = {run_seed: seed_row.score}
    more_seeds = list(range(run_seed + 1, run_seed + max(1, fit_seeds)))

    def refit(fit_seed: int) -> RunResult:
        return evaluate_sources(prepared, {"seed": (task.seed_source, None)}, heldout=split, workers=1,
                                seed=fit_seed)["seed"]

    # The other fit seeds run side by side, one sandbox each, after the seed's own timing was taken alone.
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(more_seeds)))) as threads:
        refits = list(threads.map(refit, more_seeds))
    for fit_seed, result in zip(more_seeds, refits):
        if result.outcome is Outcome.OK:
            by_fit_seed[fit_seed] = result.scores["score"]
        else:
            problems.append(f"seed, fit seed {fit_seed}: {result.outcome.name}: {error_line(result.error)}")
    more_problems, more_warnings, suggested = seed_score_findings(task, by_fit_seed, rows)
    return TaskCheck(
        rows, problems + more_problems, warnings + more_warnings, list(by_fit_seed.values()), list(by_fit_seed),
        suggested, timeout_s, limited_time_s(results["seed"]),
    )


def _row(name: str, kind: str, source: str, result: RunResult, function_name: str) -> CheckRow:
    from engine.fit import read_params

    try:
        num_params = len(read_params(source, function_name).names)
    except ValueError:
        num_params = -1
    ok = result.outcome is Outcome.OK
    return CheckRow(
        name=name,
        kind=kind,
        outcome=result.outcome.name,
        score=result.scores.get("score") if ok else None,
        train_score=result.scores.get("train_score") if ok else None,
        num_params=num_params,
        wall_s=result.wall_time_s,
        error=result.error,
    )


def seed_score_findings(
    task: TaskSpec, by_fit_seed: Mapping[int, float], rows: Sequence[CheckRow]
) -> tuple[list[str], list[str], dict[str, float]]:
    """Compares the seed's scores with task.yaml's seed_score and its tolerance; returns (problems, warnings,
    suggested task.yaml fields).

    Args:
        by_fit_seed: the seed's selection score per fit seed, the run's seed first.
        rows: the check's rows, the seed first; the baselines' scores tell how wide a tolerance is too wide.
    """
    expected, tolerance = task.file.seed_score, task.file.seed_score_tolerance
    run_seed_score = next(iter(by_fit_seed.values()))
    needed = suggested_tolerance(list(by_fit_seed.values()), run_seed_score if expected is None else expected)
    if expected is None:
        return [], [], {"seed_score": round(run_seed_score, 4), "seed_score_tolerance": needed}
    drift = seed_drift(run_seed_score, expected, tolerance, "task.yaml")
    if drift is not None:
        return [f"seed: {drift.message(task.yaml_path)}"], [], {}
    problems, warnings, suggested = [], [], {}
    off = {seed: score for seed, score in by_fit_seed.items() if seed_drift(score, expected, tolerance, "")}
    if off:
        fit_seed = max(off, key=lambda seed: abs(off[seed] - expected))
        problems.append(
            f"seed: with fit seed {fit_seed} it scores {off[fit_seed]:.4f}, {abs(off[fit_seed] - expected):.4f} "
            f"from seed_score {expected:g}, beyond seed_score_tolerance {tolerance:g}, so `discover run --seed "
            f"{fit_seed}` would stop on an ordinary fit; set seed_score_tolerance to {needed:g} (twice the largest "
            f"distance over fit seeds {min(by_fit_seed)}-{max(by_fit_seed)})."
        )
        suggested = {"seed_score_tolerance": needed}
    gaps = sorted((abs(row.score - run_seed_score), row.name) for row in rows[1:] if row.score is not None)
    if gaps and tolerance >= gaps[0][0] / 2:
        gap, name = gaps[0]
        why = (f"it could be {needed:g}" if needed < gap / 2 else
               "the seed's own spread over fit seeds needs it, so the check only sees larger changes")
        warnings.append(
            f"seed_score_tolerance {tolerance:g} is at least half the gap between the seed and {name} ({gap:.4f}): "
            f"a change in scoring that large would pass unnoticed; {why}."
        )
    return problems, warnings, suggested
