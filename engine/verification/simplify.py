"""`discover simplify DB ID`: the smallest program that keeps the evidence of a discovered one.

A search rewards score, so its winners carry terms that cancel, parameters that enter only squared or as a
product with another, and statements that do nothing. Simplification tries the rewrites of `engine/verification/rewrite.py`
one at a time, greedily:

1. collapse parameter-only sub-expressions (`beta * beta`, `a * b`) into one parameter (identifiability:
   a squared or duplicated parameter);
2. fix each parameter at its neutral value (then at 1, for a gain) and refit the rest: a flat profile means
   the parameter is not identified (it multiplies a term that cancels in the softmax, or nothing), and the
   terms it zeroes go; a gain fixed at 1 whose refit pushes another parameter to its upper bound is refitted
   once more with that bound times the gain's (the two were a product: the other takes over its range);
3. delete statements, then single terms of sums.

Every tried step is refitted through the sandbox like a search candidate (`engine/verification/refit.py`), on the
search's held-out split ("selection"; the test split is left for `discover verify`). A step is kept when the
paired bootstrap interval of the per-unit difference (step minus the original program, over sessions, subjects
or neurons) reaches zero: its drop is within the noise of the held-out units. Each step is compared with the
original, not with the previous step, so small drops cannot add up beyond that band.

The result is stored as a new program whose parent is the original, through the run's database writer; its
docstring lists the steps kept (the original's docstring, often the seed's, no longer describes it).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from engine.verification.comparison import PairedDifference, paired_difference, unit_values
from engine.errors import EngineError
from engine.search.evaluation import to_candidate
from engine.task.results import fitted_groups
from engine.verification.refit import Refitter
from engine.verification.rewrite import (Rewrite, collapse_parameter_expressions, declared_parameters, fix_parameter,
                            neutral_value, replace_docstring, statement_deletions, term_deletions, widen_bounds)
from islands import Program, complexity
from sandbox.results import Outcome, RunResult

__all__ = ["SimplifyStep", "Simplification", "simplify_source", "simplify_stored", "DEFAULT_MAX_EVALUATIONS"]

DEFAULT_MAX_EVALUATIONS = 80  # refits per program; a bandit refit takes a few seconds on one core


@dataclass(frozen=True, slots=True)
class SimplifyStep:
    """One tried rewrite: what it did, whether it was kept, and its paired difference from the original."""

    kind: str
    description: str
    kept: bool
    outcome: str
    score: float | None
    difference: PairedDifference | None
    num_params: int
    ast_size: int

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.description, "kept": self.kept, "outcome": self.outcome,
                "score": self.score, "difference": self.difference.as_dict() if self.difference else None,
                "num_params": self.num_params, "ast_size": self.ast_size}


@dataclass(frozen=True, slots=True)
class Simplification:
    """What `simplify_source` found: the final source, its result on the held-out split, and every tried step."""

    original_source: str
    source: str
    original_result: RunResult
    result: RunResult
    steps: tuple[SimplifyStep, ...] = field(default_factory=tuple)
    evaluations: int = 0

    @property
    def changed(self) -> bool:
        return any(step.kept for step in self.steps)


def _proposals(source: str, function_name: str) -> list[Rewrite]:
    """Returns the rewrites to try on `source`, in the order they are tried."""
    proposals = list(collapse_parameter_expressions(source, function_name))
    declared = declared_parameters(source, function_name)
    # First each parameter at its neutral value (0: the term it scales is gone), then at 1 where the bounds allow
    # (a gain or exponent that does nothing), so both additive and multiplicative parameters can be removed.
    fixes = [(name, neutral_value(low, high)) for name, (low, high) in declared.items()]
    fixes += [(name, 1.0) for name, (low, high) in declared.items()
              if low <= 1.0 <= high and neutral_value(low, high) != 1.0]
    for name, value in fixes:
        fixed = fix_parameter(source, function_name, name, value)
        if fixed is not None:
            unfolded = fix_parameter(source, function_name, name, value, fold=False)
            low, high = declared[name]
            proposals.append(Rewrite("fix_parameter", f"fix {name} at {value:g}", f"fix {name} at {value:g}", fixed,
                                     fallback=unfolded if unfolded != fixed else None, fixed=(name, value, low, high)))
    proposals += statement_deletions(source, function_name)
    proposals += term_deletions(source, function_name)
    return proposals


def _at_upper_bound(source: str, result: RunResult, function_name: str) -> set[str]:
    """The declared parameters with non-negative bounds whose fitted value, in some group, reached the upper bound."""
    declared = declared_parameters(source, function_name)
    hits = set()
    for values in fitted_groups(result.details.get("fitted_params")).values():
        for name, value in values.items():
            if name not in declared or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            low, high = declared[name]
            if low >= 0.0 and high > 0.0 and high - value <= 1e-3 * (high - low):
                hits.add(name)
    return hits


def _range_moved(rewrite: Rewrite, result: RunResult, original: set[str], function_name: str) -> Rewrite | None:
    """Returns the step "fix a gain at 1" again with the gain's range handed to the parameters its refit pushed
    to their upper bound, or None when that does not apply.

    A gain fixed at 1 leaves its partner in a product to cover the product's range alone: with gain_2 on (0, 5)
    fixed, gain on (0, 300) can no longer reach a fitted gain * gain_2 of 600, and the step would be judged on a
    range it lost rather than on the mechanism. The partner is found by where the refit ended: a parameter with
    non-negative bounds that reached its upper bound in some group, and had not in the original program's fit
    (`original`), gets that bound times the gain's.
    """
    if rewrite.kind != "fix_parameter" or rewrite.fixed is None or result.outcome is not Outcome.OK:
        return None
    name, value, _, fixed_high = rewrite.fixed
    if value != 1.0 or fixed_high <= 1.0:
        return None
    names = sorted(_at_upper_bound(rewrite.source, result, function_name) - original)
    if not names:
        return None
    declared = declared_parameters(rewrite.source, function_name)
    widened = widen_bounds(rewrite.source, function_name,
                           {n: (declared[n][0], declared[n][1] * fixed_high) for n in names})
    if widened is None:
        return None
    return replace(rewrite, source=widened, fallback=None,
                   description=f"{rewrite.description}, {' and '.join(names)} taking over its range "
                               f"(upper bound x {fixed_high:g})")


def simplify_source(source: str, function_name: str, refitter: Refitter, per_test_units: str, *,
                    max_evaluations: int = DEFAULT_MAX_EVALUATIONS, batch: int = 2,
                    progress: Callable[[str], None] | None = None) -> Simplification:
    """Simplifies one program; returns the result (unchanged when no step keeps the evidence).

    Args:
        source: the program's module source.
        refitter: evaluates sources on the held-out split that decides (the search's "selection").
        per_test_units: task.yaml's `per_test_units`, how a unit's held-out value is compared.
        max_evaluations: refits to spend, the original's included.
        batch: rewrites refitted at the same time (the refitter's workers).
    """
    say = progress or (lambda text: None)
    (original_result,) = refitter.evaluate([source])
    if original_result.outcome is not Outcome.OK:
        raise EngineError(f"the program does not evaluate any more ({original_result.outcome.name}: "
                          f"{original_result.error[-300:]}); there is nothing to simplify.")
    original_units = unit_values(original_result.details.get("scores_per_test") or {}, per_test_units)
    if len(original_units) < 2:
        raise EngineError("the task's score returns fewer than two held-out units (scores_per_test); "
                          "simplification needs them to compare a step with the original.")
    original_at_upper = _at_upper_bound(source, original_result, function_name)
    current, current_result = source, original_result
    steps: list[SimplifyStep] = []
    rejected: set[str] = set()
    evaluations = 1
    while evaluations < max_evaluations:
        proposals = [rewrite for rewrite in _proposals(current, function_name) if rewrite.key not in rejected]
        accepted = None
        while proposals and accepted is None and evaluations < max_evaluations:
            chunk, proposals = proposals[:batch], proposals[batch:]
            chunk = chunk[: max_evaluations - evaluations]
            results = refitter.evaluate([rewrite.source for rewrite in chunk])
            evaluations += len(chunk)
            retry = [i for i, (rewrite, result) in enumerate(zip(chunk, results))
                     if result.outcome is not Outcome.OK and rewrite.fallback is not None]
            if retry:
                chunk = [replace(rewrite, source=rewrite.fallback) if i in retry else rewrite
                         for i, rewrite in enumerate(chunk)]
                for i, result in zip(retry, refitter.evaluate([chunk[i].source for i in retry])):
                    results[i] = result
                evaluations += len(retry)
            moved = [(i, widened) for i, (rewrite, result) in enumerate(zip(chunk, results))
                     if (widened := _range_moved(rewrite, result, original_at_upper, function_name)) is not None]
            if moved and evaluations < max_evaluations:
                moved = moved[: max_evaluations - evaluations]
                for (i, widened), result in zip(moved, refitter.evaluate([w.source for _, w in moved])):
                    if result.outcome is Outcome.OK:  # else the step is judged as first refitted
                        chunk[i], results[i] = widened, result
                evaluations += len(moved)
            for rewrite, result in zip(chunk, results):
                ok = result.outcome is Outcome.OK
                difference = paired_difference(
                    unit_values(result.details.get("scores_per_test") or {}, per_test_units), original_units
                ) if ok else None
                keep = accepted is None and difference is not None and difference.high >= 0.0
                size = complexity(rewrite.source, function_name)
                steps.append(SimplifyStep(rewrite.kind, rewrite.description, keep, result.outcome.name,
                                          result.scores.get("score") if ok else None, difference,
                                          size.num_params, size.ast_size))
                say(f"{'kept' if keep else 'tried'}: {rewrite.description}"
                    + (f" ({difference.describe()})" if difference else f" ({result.outcome.name})"))
                if keep:
                    accepted = (rewrite, result)
                elif difference is None or difference.high < 0.0:
                    rejected.add(rewrite.key)  # a step that passed after another was kept is tried again
        if accepted is None:
            break
        current, current_result = accepted[0].source, accepted[1]
    return Simplification(original_source=source, source=current, original_result=original_result,
                          result=current_result, steps=tuple(steps), evaluations=evaluations)


def describing_docstring(program_id: int, simplification: Simplification, function_name: str) -> str:
    """Returns a docstring that says where the simplified program comes from and what was done to it."""
    kept = [step.description for step in simplification.steps if step.kept]
    names = ", ".join(declared_parameters(simplification.source, function_name))
    lines = [f"Simplified from program {program_id} by `discover simplify`; steps kept:", ""]
    lines += [f"- {description}" for description in kept]
    lines += ["", f"Free parameters: {names}."]
    # Indented like the body, so the docstring reads as the function's own; blank lines carry no spaces.
    return "\n".join([lines[0]] + [f"    {line}" if line else "" for line in lines[1:]]) + "\n    "


def source_diff(before: str, after: str, before_name: str, after_name: str) -> str:
    """Returns a unified diff of two sources."""
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        fromfile=before_name, tofile=after_name))


def simplify_stored(db_path: Path, program_id: int, *, task_yaml: Path | None = None, workers: int = 2,
                    max_evaluations: int = DEFAULT_MAX_EVALUATIONS,
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Simplifies a stored program and stores the result as a new program whose parent it is.

    Returns a plain summary: the new program's id (None when no step was kept), the steps, the numbers before
    and after, and the diff.
    """
    from islands import ProgramDatabase

    reader = ProgramDatabase.open_readonly(db_path)
    try:
        meta, islands_config = reader.meta, reader.config
    finally:
        reader.close()
    # Opened for writing first, so that a database a run is writing to fails now, not after the refits.
    with ProgramDatabase.open(db_path, islands_config, meta) as database:
        return _simplify_in(database, db_path, program_id, task_yaml=task_yaml, workers=workers,
                            max_evaluations=max_evaluations, progress=progress)


def _simplify_in(database: Any, db_path: Path, program_id: int, *, task_yaml: Path | None, workers: int,
                 max_evaluations: int, progress: Callable[[str], None] | None) -> dict[str, Any]:
    from engine.verification.verify import locate_task
    from engine.search.session import prepare

    meta, program = database.meta, database.get(program_id)
    if program.score is None:
        raise EngineError(f"program {program_id} did not evaluate (outcome {program.outcome}); "
                          "there is nothing to simplify.")
    prepared = prepare(locate_task(meta, task_yaml))
    if prepared.meta.data_hash != meta.data_hash or prepared.meta.task_version != meta.task_version:
        raise EngineError(f"the task's data or scoring version differ from the run's in {db_path}; simplify with "
                          "the task as it was when the run was made.")
    function_name = prepared.task.function_name
    with Refitter(prepared, heldout="selection", workers=workers, hidden_paths=[db_path]) as refitter:
        simplification = simplify_source(program.source, function_name, refitter,
                                         prepared.task.file.per_test_units, max_evaluations=max_evaluations,
                                         progress=progress)
    summary: dict[str, Any] = {
        "program_id": program_id,
        "new_program_id": None,
        "evaluations": simplification.evaluations,
        "steps": [step.as_dict() for step in simplification.steps],
        "before": _numbers(program.source, simplification.original_result, function_name),
        "after": _numbers(simplification.source, simplification.result, function_name),
        "diff": "",
    }
    if not simplification.changed:
        return summary
    source = replace_docstring(simplification.source, function_name,
                               describing_docstring(program_id, simplification, function_name))
    candidate = to_candidate(simplification.result, source=source, parent_ids=(program_id,),
                             island_id=max(program.island_id, 0), proposer="simplify")
    stored: Program = database.register(candidate)
    summary["new_program_id"] = stored.id
    summary["after"] = _numbers(source, simplification.result, function_name)
    summary["diff"] = source_diff(program.source, source, f"program {program_id}", f"program {stored.id}")
    return summary


def _numbers(source: str, result: RunResult, function_name: str) -> dict[str, Any]:
    size = complexity(source, function_name)
    return {"score": result.scores.get("score"), "num_params": size.num_params, "ast_size": size.ast_size,
            "fitted_params": fitted_groups(result.details.get("fitted_params"))}
