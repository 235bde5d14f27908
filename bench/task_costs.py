"""What one candidate costs in each bundled task: the task's own score called on its seed (and baselines), the
way the trusted scorer calls it (an exported candidate, in a warm process), with the fit's settings from the task.

For each candidate it prints medians over `repeats` fresh candidates (each pays its own compile, as in a run):
compile and fit seconds (the fitter's own split, where the task's fitter reports one), the rest of the score
call ("other": data checks, held-out scoring outside the fit, result building), the process CPU seconds of the
whole call, the training score (the final likelihood, in the task's units) and the held-out score. The selection
split is the held-out set, as in a search.

Used by `bench/fit.py --all-tasks`; run it on an idle machine (`uptime`) and compare runs made together.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def candidate_costs(task_yaml: Path, which: str, repeats: int) -> list[dict[str, float | str]]:
    """Returns one row per candidate of the task (seed, or seed and baselines when which == "all")."""
    from engine.fit import read_params
    from engine.search.session import prepare
    from sandbox.exported import export_candidate, load_candidate
    from tests.tasks.candidates import module_from_source

    prepared = prepare(task_yaml, None, {})
    task, splits = prepared.task, prepared.splits
    score = task.score.load()
    inputs = list(task.file.inputs.values())
    sources = {"seed": task.seed_source}
    if which == "all":
        for name, baseline in task.file.baselines.items():
            if baseline.kind != "ceiling":
                sources[name] = (task.folder / baseline.file).read_text()
    rows = []
    for name, source in sources.items():
        spec = read_params(source, task.function_name)
        declared = dict(zip(spec.names, zip(spec.lows, spec.highs)))
        module = module_from_source(source)
        blob = export_candidate(module, function_name=task.function_name, parameters=spec.names,
                                inputs=inputs)["exported"]
        samples: dict[str, list[float]] = {}
        result = None
        for repeat in range(repeats + 1):  # the first call warms the process, as a worker's first candidate does
            candidate = load_candidate(blob, function_name=task.function_name, parameters=declared, inputs=inputs)
            started, started_cpu = time.perf_counter(), time.process_time()
            result = score(candidate, splits["train"], splits["selection"])
            wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
            if repeat == 0:
                continue
            timings = result.timings
            compile_s = float(timings.get("compile_s", float("nan")))
            fit_s = float(timings.get("fit_s", float("nan")))
            known = sum(v for v in (compile_s, fit_s) if v == v)
            for key, value in (("compile_s", compile_s), ("fit_s", fit_s), ("other_s", wall - known),
                               ("wall_s", wall), ("cpu_s", cpu)):
                samples.setdefault(key, []).append(value)
        rows.append({"task": task.name, "candidate": name,
                     **{key: statistics.median(values) for key, values in samples.items()},
                     "train_score": float("nan") if result.train_score is None else float(result.train_score),
                     "score": float(result.score)})
    return rows


def print_table(rows: list[dict[str, float | str]], *, header: bool = True) -> None:
    columns = ("compile_s", "fit_s", "other_s", "wall_s", "cpu_s", "train_score", "score")
    if header:
        print(f"{'task':8} {'candidate':26} " + " ".join(f"{c:>11}" for c in columns))
    for row in rows:
        print(f"{row['task']:8} {row['candidate']:26} " + " ".join(f"{row[c]:11.4f}" for c in columns), flush=True)
