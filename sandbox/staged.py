"""`StagedSandbox`: a candidate's Python is traced where there is nothing to steal; it is scored where none runs.

A score is evidence only if the candidate cannot reach what computes it. So one evaluation has two stages, each
a warm worker of its own (`ProcessSandbox`, or `DockerSandbox` on a cluster):

1. **Trace** (`stage="trace"`): the candidate's source passes the static check, runs under bubblewrap and the
   task's limits, and its evolved function is traced with abstract inputs (the task's `inputs`: shapes and
   dtypes) and exported as StableHLO with its derivative (`sandbox/exported.py`). This worker holds no split,
   no scorer and no path to data: the task's folder, the code beside this package, the data mirror and cache,
   the working directory and the user's home are hidden. Whatever the candidate prints or writes to its result
   pipe, the only thing taken from this stage is the exported computation; a verdict it forges is ignored.
2. **Score** (`stage="score"`): a trusted worker that holds the task's scorer and the splits (train and the
   held-out split) deserializes the computation, checks it (the declared arguments, no effects, no host
   callbacks, custom calls from a short allow-list) and passes it to the task's `score(...)` in place of the
   candidate's function. No candidate Python ever runs here; it still runs under the time and memory limits,
   because a computation can loop or allocate.

What is not guaranteed: the exported computation is the candidate's model and can compute anything a JAX
program can from its inputs, so a task's inputs must not carry the answer; XLA itself is trusted; and without
bubblewrap (a plain subprocess, as the engine warns) the tracing stage can read the user's files.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from sandbox.errors import SandboxError
from sandbox.results import Job, Outcome, RunResult, TaskContext

#: The tracing stage's entry: `sandbox/exported.py:export_candidate`.
TRACE_ENTRY = f"{Path(__file__).resolve().parent / 'exported.py'}:export_candidate"

StageFactory = Callable[[TaskContext, str], object]


def tracing_context(context: TaskContext, platforms: Sequence[str] = ("cpu",)) -> TaskContext:
    """Returns the tracing stage's context: the export entry, and a payload with shapes but no data."""
    if not context.inputs:
        raise SandboxError("a staged evaluation needs TaskContext.inputs (the evolved function's arguments).")
    return replace(context, entry=TRACE_ENTRY, root=str(Path(__file__).resolve().parent),
                   payload={"function_name": context.function_name, "inputs": list(context.inputs),
                            "platforms": list(platforms)})


class StagedSandbox:
    """Evaluates candidates in two stages: trace and export in one sandbox, fit and score in a trusted worker.

    Example:
        >>> sandbox = StagedSandbox(context, lambda ctx, stage: ProcessSandbox(ctx, stage=stage))
        >>> result = sandbox.run(Job(1, source, parameters=(("alpha", 0.0, 1.0),)))
        >>> sandbox.close()

    Args:
        context: the task's context (entry = its score, payload = its splits, `inputs` set).
        open_stage: opens one stage's sandbox: (context, "trace" | "score") -> an object with
            `run(job, exported=None)` and `close()`.
        platforms: what the candidate is lowered for: the scoring worker's JAX platform ("cpu" or "cuda").
    """

    def __init__(self, context: TaskContext, open_stage: StageFactory, *, platforms: Sequence[str] = ("cpu",)) -> None:
        self.context = context
        self.tracer = open_stage(tracing_context(context, platforms), "trace")
        try:
            self.scorer = open_stage(context, "score")
        except BaseException:
            self.tracer.close()
            raise

    @property
    def isolated(self) -> bool:
        """Whether the tracing stage runs under bubblewrap (or in a container)."""
        return bool(getattr(self.tracer, "isolated", True))

    def run(self, job: Job) -> RunResult:
        """Traces the candidate, then scores the computation; returns how it ended, never raises for a candidate."""
        started = time.perf_counter()
        if getattr(self.scorer, "warm", True) is False:  # its start-up (importing JAX) overlaps the tracing
            self.scorer.prestart()
        traced = self.tracer.run(job)
        if traced.outcome is not Outcome.OK:
            return replace(traced, timings={**traced.timings, "trace_wall": traced.wall_time_s})
        # the constants go to the scorer only when the lifted version was exported (its check then expects them)
        lifted = traced.details.get("lifted") is True
        scored = self.scorer.run(job if lifted else replace(job, constants=()), exported=traced.details["exported"])
        timings = {**{f"trace_{k}" if k in scored.timings or k == "wall" else k: v
                      for k, v in traced.timings.items()}, **scored.timings}
        timings["wall"] = time.perf_counter() - started
        details = dict(scored.details)
        anomalies = [d for d in (traced.details.get("sandbox_anomaly"), scored.details.get("sandbox_anomaly")) if d]
        if anomalies:
            details["sandbox_anomaly"] = "; ".join(anomalies)
        output = "\n".join(text for text in (traced.output, scored.output) if text)
        return replace(scored, details=details, timings=timings, wall_time_s=timings["wall"], output=output)

    def close(self) -> None:
        """Closes both stages; safe to call twice."""
        try:
            self.tracer.close()
        finally:
            self.scorer.close()

    def __enter__(self) -> StagedSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
