"""What the verifier's two stages cost: a candidate scored as Python in the scorer's process against the same
candidate exported in a tracing sandbox and scored as a computation, per task seed.

Run:  .venv/bin/python bench/export.py                      (bandit and neuron seeds, about 3 minutes on 2 cores)
      .venv/bin/python bench/export.py --tasks tasks/ddm_sim/task.yaml --repeats 1

For each task it prints, medians over `--repeats`:
- in one process: the task's score called with the seed's Python function (the path before the split, which let
  a candidate reach the scorer) and with the exported candidate; export (trace and lower the function and its two
  derivatives) and load (deserialize and check) are timed on their own;
- through the sandboxes a run uses (warm workers, bubblewrap where installed): wall seconds per candidate, split
  into the tracing stage and the scoring stage, and the CPU seconds of each stage's child.
Times are seconds; run it on an idle machine (check `uptime`) and compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.search.evaluation import build_context, make_job  # noqa: E402
from engine.fit import read_params  # noqa: E402
from engine.search.session import prepare  # noqa: E402
from sandbox.exported import export_candidate, load_candidate  # noqa: E402
from sandbox.pool import SandboxSpec  # noqa: E402
from tests.tasks.candidates import module_from_source  # noqa: E402


class PythonFunction:
    """The candidate's own Python function with its PARAMS: what a score received before the split."""

    def __init__(self, function, declared):
        self.function, self.PARAMS, self.__name__ = function, declared, function.__name__

    def __call__(self, *args):
        return self.function(*args)


def in_process(task, splits, repeats: int) -> list[tuple[str, float]]:
    source = task.seed_source
    spec = read_params(source, task.function_name)
    declared = dict(zip(spec.names, zip(spec.lows, spec.highs)))
    inputs = list(task.file.inputs.values())
    score = task.score.load()
    rows: dict[str, list[float]] = {}

    def timed(name, function):
        started = time.perf_counter()
        value = function()
        rows.setdefault(name, []).append(time.perf_counter() - started)
        return value

    for _ in range(repeats):
        module = module_from_source(source)
        direct = PythonFunction(getattr(module, task.function_name), declared)
        python_score = timed("score, Python function (s)", lambda: score(direct, splits["train"], splits["selection"]))
        blob = timed("export: trace + lower x3 (s)", lambda: export_candidate(
            module, function_name=task.function_name, parameters=spec.names, inputs=inputs)["exported"])
        candidate = timed("load: deserialize + check (s)", lambda: load_candidate(
            blob, function_name=task.function_name, parameters=declared, inputs=inputs))
        exported_score = timed("score, exported computation (s)",
                               lambda: score(candidate, splits["train"], splits["selection"]))
        for label, result in (("Python", python_score), ("exported", exported_score)):
            for phase in ("compile_s", "fit_s"):
                if phase in result.timings:
                    rows.setdefault(f"  {phase} ({label})", []).append(result.timings[phase])
        rows.setdefault("|score difference|", []).append(abs(python_score.score - exported_score.score))
    rows["exported size (kB)"] = [len(blob) / 1024]
    return [(name, statistics.median(values)) for name, values in rows.items()]


def sandboxed(prepared, repeats: int) -> list[tuple[str, float]]:
    context = build_context(prepared.task, prepared.splits)
    sandbox = SandboxSpec()(context, {})
    rows: dict[str, list[float]] = {}
    try:
        sandbox.run(make_job(0, prepared.task.seed_source, prepared.task.function_name))  # start both workers
        for job_id in range(1, repeats + 1):
            result = sandbox.run(make_job(job_id, prepared.task.seed_source, prepared.task.function_name))
            timings = result.timings
            for name, key in (("wall per candidate (s)", "wall"), ("  tracing stage wall (s)", "trace_wall"),
                              ("  tracing child CPU (s)", "trace_child_cpu"),
                              ("  scoring child CPU (s)", "child_cpu")):
                if key in timings:
                    rows.setdefault(name, []).append(timings[key])
            rows.setdefault("  scoring stage wall (s)", []).append(timings["wall"] - timings.get("trace_wall", 0.0))
    finally:
        sandbox.close()
    return [(name, statistics.median(values)) for name, values in rows.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["tasks/bandit/task.yaml", "tasks/neuron/task.yaml"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for task_yaml in args.tasks:
        prepared = prepare(Path(task_yaml), None, {})
        print(f"\n{prepared.task.name} seed ({task_yaml})")
        for name, value in [*in_process(prepared.task, prepared.splits, args.repeats),
                            *sandboxed(prepared, args.repeats)]:
            print(f"  {name:38} {value:10.4g}")


if __name__ == "__main__":
    main()
