"""`discover verify DB ID`: the checks that let a scientist trust one discovered program.

For a stored program it (1) scores it on the test split, which the search never saw, next to the seed, the
task's baselines and its ceiling, all fitted the same way; (2) runs the task's `verify` entry in the sandbox
(parameter recovery: simulate from parameter sets around the fitted ones, refit, correlate; posterior
predictive figures); (3) reports complexity (free parameters, AST size). The results are stored in the run's
database, so reports show them without recomputing.
"""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from engine.checks import evaluate_sources, reference_models
from engine.errors import EngineError
from engine.session import prepare, task_yaml_of
from sandbox.results import Outcome

__all__ = ["verify_program", "locate_task", "recovery_failures"]


def locate_task(meta, task_yaml: Path | None) -> Path:
    """Returns the task.yaml of a run: the one given, or the one recorded in its database."""
    path = task_yaml or task_yaml_of(meta)
    if path is None or not Path(path).is_file():
        raise EngineError(
            f"cannot find the task.yaml of task '{meta.task_name}' (recorded: {path}); pass it with --task."
        )
    return Path(path)


def recovery_failures(record: Mapping[str, Any]) -> str:
    """Returns one sentence on the recovery sets whose refit failed, or "" when none did."""
    failed = list(record.get("recovery_failed_sets") or [])
    if not failed:
        return ""
    kept = len(next(iter((record.get("recovery_pairs") or {}).values()), []))
    rest = (f"the correlations use the other {kept}." if kept >= 3
            else f"the {kept} left are too few for a correlation.")
    return (f"{len(failed)} of {len(failed) + kept} simulated parameter sets could not be refitted (no restart gave a "
            f"finite likelihood; sets {failed}); {rest}")


def verify_program(db_path: Path, program_id: int, *, task_yaml: Path | None = None, workers: int = 2) -> dict[str, Any]:
    """Runs the checks for one program and stores them in the database; returns the stored record."""
    from islands import ProgramDatabase, save_verification

    reader = ProgramDatabase.open_readonly(db_path)
    try:
        meta = reader.meta
        program = reader.get(program_id)
    finally:
        reader.close()
    if program.score is None:
        raise EngineError(f"program {program_id} did not evaluate (outcome {program.outcome}); there is nothing to verify.")
    prepared = prepare(locate_task(meta, task_yaml))
    if prepared.meta.data_hash != meta.data_hash or prepared.meta.task_version != meta.task_version:
        raise EngineError(
            f"the task's data or scoring version differ from the run's (database {db_path}: version {meta.task_version}, "
            f"data {meta.data_hash[:12]}; now version {prepared.meta.task_version}, data {prepared.meta.data_hash[:12]}). "
            "Verify with the task as it was when the run was made."
        )
    task = prepared.task
    started = time.perf_counter()
    models = {name: (source, entry) for name, (_, source, entry) in reference_models(prepared).items()}
    models["program"] = (program.source, None)
    results = evaluate_sources(prepared, models, heldout="test", workers=workers)
    if task.file.verify:
        verify_entry = str(task.resolve_entry(task.file.verify, "verify"))
        results.update(
            evaluate_sources(
                prepared, {"verify": (program.source, verify_entry)}, heldout="test", workers=1,
                timeout_s=task.file.limits.verify_timeout_s,
            )
        )

    kinds = {name: kind for name, (kind, _, _) in reference_models(prepared).items()}
    test_scores = {}
    for name, result in results.items():
        if name == "verify":
            continue
        ok = result.outcome is Outcome.OK
        test_scores[name] = {
            "kind": kinds.get(name, "discovered"),
            "outcome": result.outcome.name,
            "score": result.scores.get("score") if ok else None,
            "train_score": result.scores.get("train_score") if ok else None,
            "error": result.error[-500:],
        }
    record: dict[str, Any] = {
        "program_id": program_id,
        "created_at": time.time(),
        "selection_score": program.score,
        "test_score": test_scores["program"]["score"],
        "test_scores": test_scores,
        "complexity": {"num_params": program.num_params, "ast_size": program.ast_size},
        "fitted_params": dict(program.fitted_params),
    }
    verify_result = results.get("verify")
    if verify_result is not None:
        record["verify_outcome"] = verify_result.outcome.name
        record["verify_error"] = verify_result.error[-2000:]
        record["recovery"] = dict(verify_result.details.get("recovery") or {})
        record["recovery_pairs"] = dict(verify_result.details.get("recovery_pairs") or {})
        record["recovery_failed_sets"] = list(verify_result.details.get("recovery_failed_sets") or [])
        record["figures"] = list(verify_result.details.get("figures") or [])
    else:
        record["verify_outcome"] = "NOT_DEFINED"
        record["figures"] = []
    record["wall_s"] = time.perf_counter() - started
    save_verification(db_path, program_id, record)
    return record
