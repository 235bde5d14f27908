"""Building candidates from task files the way the sandbox hands them to a task's score function: the source is
executed and its evolved function exported (`sandbox/exported.py`), then rebuilt as a `CandidateFunction`.

In a run these two steps happen in two processes (the tracing sandbox and the trusted scorer); here they happen
in the test's process, so a task's tests exercise exactly the callable its score receives.
"""

from __future__ import annotations

import types
from pathlib import Path

from engine.fit import read_params
from sandbox.exported import CandidateFunction, export_candidate, load_candidate
from engine.task.spec import load_task

#: The offline data mirror beside the checkout (`../shared/data`), as `.ci/run` sets it.
MIRROR = Path(__file__).resolve().parents[3] / "shared" / "data"


def module_from_source(source: str, filename: str = "candidate.py") -> types.ModuleType:
    """Returns a module named "candidate" executed from `source`, with its source as `__source__`."""
    module = types.ModuleType("candidate")
    module.__source__ = source
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def module_from(path: Path) -> types.ModuleType:
    """Returns the module of the file at `path` (its Python functions, for tests that call them directly)."""
    return module_from_source(Path(path).read_text(), str(path))


def candidate_from_source(source: str, task_yaml: Path, filename: str = "candidate.py") -> CandidateFunction:
    """Returns the exported candidate of `source` for the task of `task_yaml`."""
    task = load_task(task_yaml)
    spec = read_params(source, task.function_name)
    inputs = list(task.file.inputs.values())
    exported = export_candidate(module_from_source(source, filename), function_name=task.function_name,
                                parameters=spec.names, inputs=inputs)["exported"]
    return load_candidate(exported, function_name=task.function_name, inputs=inputs,
                          parameters=dict(zip(spec.names, zip(spec.lows, spec.highs))))


def candidate_from(path: Path, task_yaml: Path | None = None) -> CandidateFunction:
    """Returns the exported candidate of the file at `path`; its task is the task.yaml of the task folder above
    it (tasks/<task>/seed.py, tasks/<task>/baselines/x.py) unless `task_yaml` is given."""
    path = Path(path)
    if task_yaml is None:
        folder = path.parent if (path.parent / "task.yaml").is_file() else path.parent.parent
        task_yaml = folder / "task.yaml"
    return candidate_from_source(path.read_text(), task_yaml, str(path))
