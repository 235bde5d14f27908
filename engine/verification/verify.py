"""`discover verify DB ID`: the checks that let a scientist trust one discovered program.

For a stored program it (1) scores it on the test split, which the search never saw, next to the seed, the
task's baselines and its ceiling, all fitted the same way; (2) runs the task's `verify` entry in the trusted
scoring worker, on the program's exported computation (parameter recovery: simulate from parameter sets around the
fitted ones, refit, correlate; posterior predictive figures; with --posterior, posterior quantiles); (3) reports
complexity (free parameters, AST size). The results are stored in the run's database, so reports show them
without recomputing.
"""

from __future__ import annotations

import math

import time
from pathlib import Path
from collections.abc import Mapping
from typing import Any, TypedDict

import numpy as np

from engine.verification.ablation import ablate
from engine.verification.checks import evaluate_sources, reference_models
from engine.verification.comparison import difference_label, information_criteria, paired_difference, unit_values
from engine.verification.refit import Refitter
from engine.errors import EngineError
from engine.search.session import prepare, task_yaml_of
from engine.task.results import POOLED, fitted_groups, posterior_groups
from sandbox.results import Outcome

__all__ = ["VerificationRecord", "verify_program", "comparisons", "comparison_lines", "locate_task", "check_lines",
           "fit_spread", "posterior_line", "recovery_failures", "recovery_figure", "recovery_redraws",
           "recovery_summary", "task_checks"]


class VerificationRecord(TypedDict, total=False):
    """What `discover verify` stores for a program (`ProgramDatabase.save_verification`, as JSON: a non-finite
    number is stored as null) and what the report, `export` and the command line read back. Records stored by
    earlier versions may lack keys, so readers use `.get`.
    """

    program_id: int
    created_at: float  # unix time, s
    selection_score: float | None  # the program's score in the search (selection split)
    test_score: float | None  # its score on the test split, which the search never saw
    test_scores: dict[str, dict[str, Any]]  # model name ("program", "seed", baselines) -> score, train_score,
    #                                         error, per_test, information_criteria, scores_by_fit_seed
    complexity: dict[str, int]  # num_params, ast_size
    fitted_params: dict[str, dict[str, float]]  # {group: {name: value}} as the search fitted them
    fit_seeds: list[int]
    comparisons: dict[str, dict[str, Any]]  # model name -> paired difference over the per-test units (interval)
    comparison_units: str
    ablation: list[dict[str, Any]]  # one row per parameter: fixed value, test score change with its interval
    verify_outcome: str  # the task's verify: OK, an outcome name, or NOT_DEFINED
    verify_error: str
    recovery: dict[str, float]  # parameter -> correlation of generating and recovered values
    recovery_pairs: dict[str, list[list[float]]]
    recovery_failed_sets: list[int]
    recovery_circular: list[str]
    recovery_redrawn: dict[str, list[str]]  # set index -> why each discarded draw's data could not be measured
    recovery_unmeasured_sets: list[int]  # sets that kept an unmeasurable draw after the most redraws
    posterior: dict[str, dict[str, list[float]]]  # group -> parameter -> (5 %, median, 95 %), groups as fitted_params
    posterior_diagnostics: dict[str, float]
    figures: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    wall_s: float

RECOVERY_CLIP_SD = 2.0  # the recovery figure's y range, as a multiple of the largest standardized generating value


def locate_task(meta, task_yaml: Path | None) -> Path:
    """Returns the task.yaml of a run: the one given, or the one recorded in its database."""
    path = task_yaml or task_yaml_of(meta)
    if path is None or not Path(path).is_file():
        raise EngineError(
            f"cannot find the task.yaml of task '{meta.task_name}' (recorded: {path}); pass it with --task."
        )
    return Path(path)


def task_checks(returned: Any) -> list[dict[str, Any]]:
    """Returns the pass/fail checks a task's verify returned, as [{"name", "passed", "detail"}, ...].

    A task's verify may return "checks": [{"name": str, "passed": bool, "detail": str}, ...] for properties that
    a model must have whatever its score (the neuron task: spike count rises with the current). An entry of any
    other shape becomes a failed check that says what was wrong with it, so a broken check is never read as a pass.
    """
    if returned is None:
        return []
    if not isinstance(returned, (list, tuple)):
        return [{"name": "task checks", "passed": False,
                 "detail": f"the task's verify returned checks of type {type(returned).__name__}; expected a list"}]
    checks = []
    for index, entry in enumerate(returned):
        if (isinstance(entry, Mapping) and isinstance(entry.get("name"), str) and isinstance(entry.get("passed"), bool)
                and isinstance(entry.get("detail", ""), str)):
            checks.append({"name": entry["name"], "passed": entry["passed"], "detail": entry.get("detail", "")})
        else:
            checks.append({"name": f"check {index}", "passed": False,
                           "detail": f"malformed check {str(entry)[:200]}; "
                                     "expected {name: str, passed: bool, detail: str}"})
    return checks


def check_lines(record: Mapping[str, Any]) -> list[str]:
    """Returns the task checks as lines for `discover verify` and the report, a count first; [] without checks.

    For example ["task checks: 1 of 2 FAILED", "FAILED f-I gain, cell B6: ...", "passed f-I gain, cell D2: ..."].
    """
    checks = list(record.get("checks") or [])
    if not checks:
        return []
    failed = sum(not check["passed"] for check in checks)
    head = f"task checks: {failed} of {len(checks)} FAILED" if failed else f"task checks: all {len(checks)} passed"
    return [head] + [f"{'passed' if check['passed'] else 'FAILED'} {check['name']}: {check['detail']}"
                     for check in checks]


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


def recovery_redraws(record: Mapping[str, Any]) -> str:
    """Returns one sentence on the recovery sets drawn again because the score cannot measure their simulated data
    (`engine.fit.parameter_recovery`'s `unmeasurable`), or "" when none was.

    For example "1 of 6 simulated parameter sets was drawn again: the score cannot measure the data of the
    discarded draws (set 4: fires at 640 Hz in a sweep, at or past the 125 Hz where the score's coincidence factor
    stops measuring)."
    """
    redrawn = record.get("recovery_redrawn")
    if not isinstance(redrawn, Mapping) or not redrawn:
        return ""
    unmeasured = record.get("recovery_unmeasured_sets")
    unmeasured = [str(k) for k in unmeasured] if isinstance(unmeasured, (list, tuple)) else []
    n_sets = len(next(iter((record.get("recovery_pairs") or {}).values()), [])) + len(
        record.get("recovery_failed_sets") or [])
    parts = []
    for key, reasons in redrawn.items():
        reasons = [str(reason) for reason in reasons] if isinstance(reasons, (list, tuple)) else [str(reasons)]
        part = f"set {key}: {reasons[0] if reasons else 'no reason given'}"
        if len(reasons) > 1:
            part += f"; drawn {len(reasons) + 1} times"
        if str(key) in unmeasured:
            part += ", and the last draw, kept, could not be measured either"
        parts.append(part)
    total = f" of {n_sets}" if n_sets else ""
    sets = "sets" if n_sets or len(redrawn) > 1 else "set"
    verb = "was" if len(redrawn) == 1 else "were"
    return (f"{len(redrawn)}{total} simulated parameter {sets} {verb} drawn again: the score cannot measure the data "
            f"of the discarded draws ({'; '.join(parts)}).")


def recovery_summary(record: Mapping[str, Any]) -> str:
    """Returns the recovery line that `discover verify` and the report show, or "" without recovery results.

    For example "parameter recovery (Pearson r, generating vs refitted): alpha=0.98, pref_deg=0.95 (circular r)".
    """
    recovery = record.get("recovery") or {}
    if not recovery:
        return ""
    circular = set(record.get("recovery_circular") or [])
    values = ", ".join(f"{name}={_r_text(value)}" + (" (circular r)" if name in circular else "")
                       for name, value in recovery.items())
    return f"parameter recovery (Pearson r, generating vs refitted): {values}"


def _check_posterior_support(task) -> None:
    """Raises EngineError, before anything runs, when the task's verify cannot be asked for a posterior."""
    import inspect

    function = task.resolve_entry(task.file.verify, "verify").load() if task.file.verify else None
    parameters = inspect.signature(function).parameters if function is not None else {}
    if "posterior" not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise EngineError(
            f"task '{task.name}' has no verify that takes a `posterior` argument ({task.file.verify or 'no verify'}), "
            "so --posterior cannot ask it for posterior intervals; docs/tasks.md shows how a verify supports it."
        )


def posterior_line(record: Mapping[str, Any]) -> str:
    """Returns the posterior line that `discover verify` and the report show, or "" without posterior results.

    For example "posterior (uniform prior on the bounds; median [5 %, 95 %]): alpha=0.31 [0.27, 0.36]; 600 draws,
    r-hat at most 1.01, 0 divergences". An entry that is not three numbers (a tampered record) shows as n/a.
    """
    groups = posterior_groups(record.get("posterior"))
    if not groups:
        return ""

    def interval(q: Any) -> str:
        if not (isinstance(q, (list, tuple)) and len(q) == 3 and all(isinstance(x, (int, float)) for x in q)):
            return "n/a"
        return f"{q[1]:.4g} [{q[0]:.4g}, {q[2]:.4g}]"

    if list(groups) == [POOLED]:
        values = ", ".join(f"{name}={interval(q)}" for name, q in groups[POOLED].items())
    else:
        values = "; ".join(f"{group}: " + ", ".join(f"{name}={interval(q)}" for name, q in posterior.items())
                           for group, posterior in groups.items())
    diagnostics = record.get("posterior_diagnostics") or {}
    count = lambda key: int(value) if isinstance(value := diagnostics.get(key), (int, float)) and math.isfinite(value) \
        else "?"
    if not isinstance(diagnostics, Mapping) or not diagnostics:
        tail = ""
    elif diagnostics.get("method") == "smc-abc":
        tail = (f"; SMC-ABC, {count('particles')} weighted particles (effective {count('ess_min')}, the fewest of "
                "the groups)")
    else:
        tail = (f"; {count('draws')} draws, r-hat at most {_r_text(diagnostics.get('r_hat_max'))}, "
                f"{count('divergences')} divergences")
    return f"posterior (uniform prior on the bounds; median [5 %, 95 %]): {values}{tail}"


def _r_text(value: Any) -> str:
    """A correlation as shown: two decimals, or "n/a" where there was none (too few sets; a stored record holds
    it as null, which JSON makes of NaN)."""
    return f"{value:.2f}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def recovery_figure(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """Returns a figure of refitted vs generating values for every parameter, or None without recovery pairs.

    Each parameter is standardized by the mean and s.d. of its generating values, so parameters on different
    scales share one pair of axes: points on the diagonal are recovered, a flat cloud is not. Refitted values
    further out than RECOVERY_CLIP_SD x the widest standardized generating value are drawn at that edge (the y
    label says so), so one wild refit does not flatten the rest.
    """
    pairs = {name: values for name, values in (record.get("recovery_pairs") or {}).items() if len(values) >= 2}
    series, extent = [], 1.0
    for name, values in pairs.items():
        generating = np.array([g for g, _ in values], float)
        refitted = np.array([r for _, r in values], float)
        spread = float(np.std(generating))
        if not np.isfinite(spread) or spread <= 0:
            continue
        x = (generating - generating.mean()) / spread
        y = (refitted - generating.mean()) / spread
        extent = max(extent, float(np.max(np.abs(x))))
        r = (record.get("recovery") or {}).get(name)
        label = f"{name} (r {r:.2f})" if isinstance(r, float) and np.isfinite(r) else name
        series.append({"label": label, "x": x.tolist(), "y": y.tolist(), "kind": "scatter", "role": "data",
                       "color": f"C{len(series) % 10}"})
    if not series:
        return None
    limit = RECOVERY_CLIP_SD * extent
    clipped = any(abs(value) > limit for one in series for value in one["y"])
    for one in series:
        one["y"] = [min(max(value, -limit), limit) for value in one["y"]]
    series.append({"label": "recovered = generating", "x": [-extent, extent], "y": [-extent, extent],
                   "kind": "line", "role": "model"})
    return {
        "title": "Parameter recovery: refitted vs generating values",
        "xlabel": "generating value (standardized per parameter)",
        "ylabel": "refitted value (same scale" + (f"; clipped at +/-{limit:.1f})" if clipped else ")"),
        "series": series,
        "legend": "outside",
    }


def fit_spread(row: Mapping[str, Any]) -> tuple[float, float, int] | None:
    """Returns (mean, s.d., n) of one model's test scores over the fitter seeds, or None with fewer than two.

    `row` is one entry of a record's "test_scores"; a fit that failed counts as missing, not as zero.
    """
    values = [value for value in row.get("scores_by_fit_seed") or [] if value is not None]
    if len(values) < 2:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)), len(values)


def comparisons(test_scores: Mapping[str, Mapping[str, Any]], per_test_units: str) -> dict[str, Any]:
    """Returns name -> the program minus that model over the held-out units (paired bootstrap), for every model.

    Each entry is a `PairedDifference` as a dict, or None when the two share fewer than two units.
    """
    program = unit_values(test_scores["program"].get("per_test") or {}, per_test_units)
    result = {}
    for name, row in test_scores.items():
        if name == "program" or not row.get("per_test"):
            continue
        difference = paired_difference(program, unit_values(row["per_test"], per_test_units))
        result[name] = difference.as_dict() if difference else None
    return result


def comparison_lines(record: Mapping[str, Any]) -> list[str]:
    """Returns the model comparison (paired differences, AIC and BIC) as lines for `discover verify`."""
    lines = []
    label = record.get("comparison_units", "held-out score")
    entries = record.get("comparisons") or {}
    if entries:
        lines.append(f"program minus each model, {label} per unit, 95% paired bootstrap interval:")
        for name, entry in entries.items():
            if entry:
                lines.append(f"  vs {name}: {entry['mean']:+.4f} [{entry['low']:+.4f}, {entry['high']:+.4f}], "
                             f"program wins {entry['wins']} of {entry['n']}")
    criteria = {name: row.get("information_criteria") for name, row in (record.get("test_scores") or {}).items()}
    if any(criteria.values()):
        lines.append("training split: AIC, BIC (k = fitted values, n = training trials):")
        for name, entry in criteria.items():
            if entry:
                lines.append(f"  {name}: AIC {entry['aic']:.1f}, BIC {entry['bic']:.1f} "
                             f"(k {entry['num_fitted']}, n {entry['num_observations']:.0f})")
    return lines


def verify_program(db_path: Path, program_id: int, *, task_yaml: Path | None = None, workers: int = 2,
                   fit_seeds: int = 1, ablation: bool = True, posterior: bool = False) -> VerificationRecord:
    """Runs the checks for one program and stores them in the database; returns the stored record.

    Besides the test scores it compares the program with the seed and every baseline (paired differences over
    the held-out units with bootstrap intervals, AIC and BIC on the training split: `engine/verification/comparison.py`)
    and, with `ablation`, knocks out each parameter and refits the rest (`engine/verification/ablation.py`).

    Args:
        fit_seeds: how many times every model is fitted for its test score, with seeds run seed, run seed + 1, ...
            The search ranked the program on one fit (the run's seed), and a fitter with random starts can give
            the same model quite different scores; with fit_seeds > 1 each test-score row also holds the scores of
            the other fits ("scores_by_fit_seed"), which `fit_spread` summarises. The first fit is the run's seed.
        posterior: also ask the task's verify for posterior quantiles of the parameters (`posterior=True`, which
            the task answers with `engine.fit.posterior_summary`); a task whose verify does not take it fails.
    """
    if fit_seeds < 1:
        raise EngineError(f"fit_seeds must be at least 1; got {fit_seeds}.")
    from islands import ProgramDatabase

    ProgramDatabase.open_to_annotate(db_path).close()  # the record is stored at the end: fail now if a run writes
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
    if posterior:
        _check_posterior_support(task)
    started = time.perf_counter()
    models = {name: (source, entry) for name, (_, source, entry) in reference_models(prepared).items()}
    models["program"] = (program.source, None)
    results = evaluate_sources(prepared, models, heldout="test", workers=workers)
    run_seed = prepared.config.run.seed
    refits = [evaluate_sources(prepared, models, heldout="test", workers=workers, seed=run_seed + k)
              for k in range(1, fit_seeds)]
    if task.file.verify:
        verify_entry = str(task.resolve_entry(task.file.verify, "verify"))
        results.update(
            evaluate_sources(
                prepared, {"verify": (program.source, verify_entry)}, heldout="test", workers=1,
                timeout_s=task.file.limits.verify_timeout_s, entry_options={"posterior": True} if posterior else None,
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
            "per_test": dict(result.details.get("scores_per_test") or {}) if ok else {},
            "information_criteria": information_criteria(
                result.scores.get("train_log_likelihood"),
                sum(len(values) for values in fitted_groups(result.details.get("fitted_params")).values()),
                result.scores.get("n_train_observations")) if ok else None,
        }
        if refits:
            test_scores[name]["scores_by_fit_seed"] = [
                one.scores.get("score") if one.outcome is Outcome.OK else None
                for one in [result] + [refit[name] for refit in refits]
            ]
    record: VerificationRecord = {
        "program_id": program_id,
        "created_at": time.time(),
        "selection_score": program.score,
        "test_score": test_scores["program"]["score"],
        "test_scores": test_scores,
        "complexity": {"num_params": program.num_params, "ast_size": program.ast_size},
        "fitted_params": fitted_groups(program.fitted_params),
        "fit_seeds": [run_seed + k for k in range(fit_seeds)],
    }
    record["comparisons"] = comparisons(test_scores, task.file.per_test_units)
    record["comparison_units"] = difference_label(task.file.per_test_units)
    if ablation and results["program"].outcome is Outcome.OK:
        with Refitter(prepared, heldout="test", workers=workers, hidden_paths=[db_path]) as refitter:
            record["ablation"] = ablate(program.source, task.function_name, refitter, task.file.per_test_units,
                                        results["program"])
    verify_result = results.get("verify")
    if verify_result is not None:
        record["verify_outcome"] = verify_result.outcome.name
        record["verify_error"] = verify_result.error[-2000:]
        record["recovery"] = dict(verify_result.details.get("recovery") or {})
        record["recovery_pairs"] = dict(verify_result.details.get("recovery_pairs") or {})
        record["recovery_failed_sets"] = list(verify_result.details.get("recovery_failed_sets") or [])
        record["recovery_circular"] = list(verify_result.details.get("recovery_circular") or [])
        redrawn = verify_result.details.get("recovery_redrawn")
        record["recovery_redrawn"] = dict(redrawn) if isinstance(redrawn, Mapping) else {}
        record["recovery_unmeasured_sets"] = list(verify_result.details.get("recovery_unmeasured_sets") or [])
        record["posterior"] = dict(verify_result.details.get("posterior") or {})
        record["posterior_diagnostics"] = dict(verify_result.details.get("posterior_diagnostics") or {})
        record["figures"] = list(verify_result.details.get("figures") or [])
        record["checks"] = task_checks(verify_result.details.get("checks"))
        figure = recovery_figure(record)
        if figure is not None:
            record["figures"].append(figure)
    else:
        record["verify_outcome"] = "NOT_DEFINED"
        record["figures"] = []
        record["checks"] = []
    record["wall_s"] = time.perf_counter() - started
    with ProgramDatabase.open_to_annotate(db_path) as database:  # the one writer of the file, while it writes
        database.save_verification(program_id, record)
    return record
