"""What crosses the sandbox boundary: limits, the task context, jobs and their results."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping


class Outcome(enum.Enum):
    """How a candidate's evaluation ended; each value is the message shown to people."""

    OK = "ran and returned scores"
    SYNTAX_ERROR = "candidate source does not parse"
    FORBIDDEN = "candidate uses an import or name outside the task's allow-list"
    TIMEOUT = "exceeded timeout_s; the worker was killed and replaced"
    OUT_OF_MEMORY = "exceeded memory_mb"
    CRASHED = "raised an exception; see RunResult.error"
    INVALID_OUTPUT = "scoring rejected the output (NaN, inf, wrong shape); see RunResult.error"
    WORKER_LOST = "the worker process or Ray actor died twice while running it"


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits applied to every candidate process."""

    timeout_s: float = 60.0
    memory_mb: int = 4096
    max_processes: int = 64
    max_file_mb: int = 64
    max_output_kb: int = 256


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Everything a worker needs that is the same for every candidate of a run.

    Attributes:
        entry: "path/to/score.py:function" (a file path, relative to `root` or absolute).
            It is called as `function(candidate, **payload)` where `candidate` is the candidate's
            module (a `types.ModuleType` made from its source), and returns a mapping with at least
            a finite float "score" (higher is better), or an object whose `record()` gives one (the engine's
            typed `TaskResult`). Other top-level floats are extra scores; other values (dicts, lists) are
            details such as "fitted_params".
        payload: keyword arguments for the entry: plain data (numpy arrays, numbers, dicts).
        function_name: the evolved function the candidate must define, e.g. "agent".
        allowed_imports: top-level module names the candidate may import; ("*",) allows all.
        root: the directory `entry` is relative to and that is put on sys.path.
        limits: resource limits for each candidate.
        inputs: the evolved function's arguments after `params`, as "dtype[shape]" (`sandbox/exported.py`).
            When set, a candidate is evaluated in two stages (`sandbox/staged.py`): its Python runs only in a
            tracing sandbox that holds no data and exports it as a computation, and the entry is called in a
            trusted worker with that computation (a `CandidateFunction`) instead of the candidate's module.
            When None, the entry receives the candidate's module in the candidate's own process: a sandbox for
            running untrusted code, not a verifier (the engine always sets `inputs`).
    """

    entry: str
    payload: Mapping[str, Any]
    function_name: str
    allowed_imports: tuple[str, ...] = ("math", "numpy", "jax", "optax")
    root: str = "."
    limits: Limits = field(default_factory=Limits)
    inputs: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One candidate to evaluate.

    Attributes:
        parameters: (name, low, high) of each free parameter, as the engine read them from the source; the
            candidate is traced with these names and the entry receives them as `candidate.PARAMS`.
        rejection: why the engine refused the source before running it (e.g. its PARAMS do not parse); the job
            then ends INVALID_OUTPUT with this message, and nothing runs.
        lifted_source: the source with its float literals read from `params` (`engine/constants.py`), which the
            tracing stage tries first; empty when there is nothing to lift.
        constants: (reserved name, value) of each lifted literal, passed to the scorer's candidate when the
            lifted source was the one exported.
    """

    job_id: int
    source: str
    parameters: tuple[tuple[str, float, float], ...] = ()
    rejection: str = ""
    lifted_source: str = ""
    constants: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class RunResult:
    """The end of one evaluation. Always returned, never raised.

    Attributes:
        scores: finite float scores from the entry, "score" among them when outcome is OK.
        details: non-float values the entry returned (e.g. "fitted_params", "scores_per_test").
        error: traceback tail or message, truncated; empty when OK.
        timings: seconds per phase, e.g. {"startup": .., "compile": .., "fit": .., "score": ..}.
        wall_time_s: seconds from dispatch to result.
        output: what the candidate printed (stdout and stderr), truncated to Limits.max_output_kb.
    """

    job_id: int
    outcome: Outcome
    scores: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    output: str = ""
