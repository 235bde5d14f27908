"""Turns a task into the sandbox's TaskContext, and sandbox results into database candidates."""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping

from engine.constants import CONSTANT_PREFIX, lift_constants
from engine.fit import ParamSpec, read_params
from islands import Candidate, Program
from sandbox.exported import parse_input
from sandbox.results import Job, Limits, Outcome, RunResult, TaskContext
from engine.task.errors import TaskSpecError
from engine.task.results import fitted_groups
from engine.task.spec import TaskSpec

__all__ = ["build_context", "make_job", "to_candidate", "at_bounds", "SPLIT_FOR_SEARCH"]

SPLIT_FOR_SEARCH = "selection"


def build_context(task: TaskSpec, splits: Mapping[str, Any], *, heldout: str = SPLIT_FOR_SEARCH, seed: int = 0) -> TaskContext:
    """Returns the sandbox context that fits on `train` and scores on the `heldout` split.

    The task's score is called as score(candidate, train, heldout, seed, **score_options) (task.yaml).
    The search uses heldout="selection"; only `discover verify` and reports use "test". The other splits are
    never sent to a worker. The splits go only to the trusted scoring stage; the candidate's Python runs in a
    tracing stage that gets the task's `inputs` (shapes and dtypes) and no data (`sandbox/staged.py`).
    """
    for name, spec in task.file.inputs.items():
        try:
            parse_input(spec)
        except ValueError as error:
            raise TaskSpecError(f"{task.yaml_path}: inputs.{name}: {error}") from None
    limits = task.file.limits
    return TaskContext(
        entry=str(task.score),
        payload={"train": splits["train"], "heldout": splits[heldout], "seed": seed, **task.file.score_options},
        function_name=task.function_name,
        allowed_imports=tuple(task.file.allowed_imports),
        root=str(task.folder),
        inputs=tuple(task.file.inputs.values()),
        limits=Limits(
            timeout_s=limits.timeout_s,
            memory_mb=limits.memory_mb,
            max_processes=limits.max_processes,
            max_file_mb=limits.max_file_mb,
        ),
    )


def make_job(job_id: int, source: str, function_name: str) -> Job:
    """Returns the job for one candidate, with the free parameters read from its PARAMS here, by the engine.

    A source whose PARAMS cannot be read becomes a job the sandbox records as INVALID_OUTPUT without running it.
    Its float literals are lifted into constants (`engine/constants.py`) so that it shares its compiled program
    with candidates that differ from it only in their numbers.
    """
    try:
        spec = read_params(source, function_name)
        lifted = lift_constants(source, function_name)
    except ValueError as error:
        return Job(job_id=job_id, source=source, rejection=str(error))
    except (RecursionError, MemoryError):  # a tree deeper than Python's tree walkers go: refused, not a crash
        return Job(job_id=job_id, source=source, rejection="the candidate's source is nested too deeply to read.")
    parameters = tuple(zip(spec.names, spec.lows, spec.highs))
    if lifted is None or any(name.startswith(CONSTANT_PREFIX) for name in spec.names):
        return Job(job_id=job_id, source=source, parameters=parameters)
    return Job(job_id=job_id, source=source, parameters=parameters, lifted_source=lifted.source,
               constants=lifted.constants)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def to_candidate(
    result: RunResult,
    *,
    source: str,
    parent_ids: tuple[int, ...],
    island_id: int,
    proposer: str,
    tokens: int = 0,
    cost_usd: float = 0.0,
    propose_s: float = 0.0,
) -> Candidate:
    """Converts a sandbox result into the record the database stores; failed results never carry a score."""
    ok = result.outcome is Outcome.OK and _finite(result.scores.get("score"))
    details = result.details
    per_test = details.get("scores_per_test") or {}
    behaviour = details.get("behaviour")
    return Candidate(
        source=source,
        parent_ids=parent_ids,
        island_id=island_id,
        outcome=result.outcome.name if (ok or result.outcome is not Outcome.OK) else Outcome.INVALID_OUTPUT.name,
        score=float(result.scores["score"]) if ok else None,
        scores_per_test={k: float(v) for k, v in per_test.items() if _finite(v)} if ok else {},
        error=result.error,
        fitted_params=fitted_groups(details.get("fitted_params")),
        timings={**{k: float(v) for k, v in result.timings.items()}, "wall": result.wall_time_s, "propose": propose_s},
        extra_scores={k: float(v) for k, v in result.scores.items() if k != "score" and _finite(v)},
        behaviour=tuple(float(x) for x in behaviour) if ok and behaviour is not None else None,
        proposer=proposer,
        tokens=tokens,
        cost_usd=cost_usd,
    )


@functools.lru_cache(maxsize=4096)
def _declared(source: str, function_name: str) -> ParamSpec | None:
    """The declared parameters, or None when the source declares none it can read.

    Cached: the loop describes the same sampled programs in prompt after prompt.
    """
    try:
        return read_params(source, function_name)
    except ValueError:
        return None


def at_bounds(program: Program, function_name: str, relative: float = 1e-3) -> list[str]:
    """Returns the declared parameters whose fitted value ended within `relative` of a bound.

    A parameter fitted per group (subject, neuron, cell) is listed as "name (k of n groups)" when k of the n groups
    that have it ended at a bound.
    """
    spec = _declared(program.source, function_name)
    if spec is None:
        return []
    counts = {name: [0, 0] for name in spec.names}
    for values in fitted_groups(program.fitted_params).values():
        usable = {name: float(value) for name, value in values.items()
                  if name in counts and isinstance(value, (int, float)) and math.isfinite(value)}
        for name in usable:
            counts[name][1] += 1
        for name in spec.at_bounds(usable, relative):
            counts[name][0] += 1
    names = []
    for name, (hits, groups) in counts.items():
        if hits and groups == 1:
            names.append(name)
        elif hits:
            names.append(f"{name} ({hits} of {groups} groups)")
    return names