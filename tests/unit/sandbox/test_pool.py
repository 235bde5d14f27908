"""LocalRunner, SandboxConfig and worker_env: the pool seam without Ray."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import pytest
from pydantic import ValidationError

from sandbox.config import SandboxConfig
from sandbox.errors import SandboxError
from sandbox.pool import LocalRunner, SandboxSpec, worker_env
from sandbox.runners import make_runner
from sandbox.results import Job, Limits, Outcome, RunResult, TaskContext

CONTEXT = TaskContext(entry="score.py:score", payload={}, function_name="f", limits=Limits(timeout_s=5.0))


class ScriptedSandbox:
    """A sandbox whose job sources are instructions: "ok:<score>", "sleep:<seconds>", "raise"."""

    running = 0
    most_running = 0
    lock = threading.Lock()

    def __init__(self, context: TaskContext, extra_env: Mapping[str, str]) -> None:
        self.extra_env = dict(extra_env)
        self.closed = False

    def run(self, job: Job) -> RunResult:
        command, _, argument = job.source.partition(":")
        with ScriptedSandbox.lock:
            ScriptedSandbox.running += 1
            ScriptedSandbox.most_running = max(ScriptedSandbox.most_running, ScriptedSandbox.running)
        try:
            if command == "sleep":
                time.sleep(float(argument))
            elif command == "raise":
                raise RuntimeError("sandbox bug")
            elif command == "env":
                return RunResult(job.job_id, Outcome.OK, scores={"score": 0.0}, details=self.extra_env)
            return RunResult(job.job_id, Outcome.OK, scores={"score": float(argument or 0)})
        finally:
            with ScriptedSandbox.lock:
                ScriptedSandbox.running -= 1

    def close(self) -> None:
        self.closed = True


def collect(runner: LocalRunner, expected: int, timeout_s: float = 10.0) -> list[RunResult]:
    results: list[RunResult] = []
    deadline = time.monotonic() + timeout_s
    while len(results) < expected and time.monotonic() < deadline:
        results += runner.results(timeout_s=0.5)
    return results


def test_local_runner_returns_every_result_and_runs_workers_in_parallel() -> None:
    ScriptedSandbox.most_running = 0
    with LocalRunner(CONTEXT, num_workers=3, sandbox_factory=ScriptedSandbox) as runner:
        for job_id in range(6):
            runner.submit(Job(job_id, "sleep:0.2"))
        assert runner.in_flight() == 6
        results = collect(runner, 6)
        assert sorted(r.job_id for r in results) == list(range(6))
        assert runner.in_flight() == 0
        assert ScriptedSandbox.most_running == 3
        assert runner.results(timeout_s=0.0) == []  # nothing in flight: returns at once


def test_results_returns_empty_after_timeout_while_jobs_run() -> None:
    with LocalRunner(CONTEXT, num_workers=1, sandbox_factory=ScriptedSandbox) as runner:
        runner.submit(Job(1, "sleep:1.0"))
        started = time.monotonic()
        assert runner.results(timeout_s=0.1) == []
        assert time.monotonic() - started < 0.8
        assert [r.job_id for r in collect(runner, 1)] == [1]


def test_duplicate_job_id_and_closed_runner_are_errors() -> None:
    runner = LocalRunner(CONTEXT, num_workers=1, sandbox_factory=ScriptedSandbox)
    runner.submit(Job(7, "sleep:0.1"))
    with pytest.raises(SandboxError, match="job_id 7 is already in flight"):
        runner.submit(Job(7, "ok:1"))
    runner.close()
    with pytest.raises(SandboxError, match="runner is closed"):
        runner.submit(Job(8, "ok:1"))


def test_sandbox_that_raises_is_reported_as_our_error() -> None:
    with LocalRunner(CONTEXT, num_workers=1, sandbox_factory=ScriptedSandbox) as runner:
        runner.submit(Job(1, "raise"))
        with pytest.raises(SandboxError, match="sandbox worker failed: RuntimeError"):
            collect(runner, 1, timeout_s=2.0)


def test_sandbox_that_cannot_open_is_reported() -> None:
    def broken_factory(context: TaskContext, extra_env: Mapping[str, str]) -> ScriptedSandbox:
        raise SandboxError("score.py not found")

    runner = LocalRunner(CONTEXT, num_workers=1, sandbox_factory=broken_factory)
    time.sleep(0.1)
    with pytest.raises(SandboxError, match="score.py not found"):
        runner.submit(Job(1, "ok:1"))
    runner.close()


@pytest.mark.parametrize("failure", ["opening", "running"])
def test_a_worker_that_fails_while_results_waits_is_reported_at_once(failure: str) -> None:
    """results(timeout_s=...) raises as soon as a worker fails, not when its timeout runs out (a GPU-mode sandbox
    on a machine without NVIDIA device nodes used to leave the caller waiting the full timeout)."""
    submitted = threading.Event()

    def broken_factory(context: TaskContext, extra_env: Mapping[str, str]) -> ScriptedSandbox:
        submitted.wait(timeout=10.0)  # fails only once the job is queued
        raise SandboxError("no NVIDIA device nodes")

    factory = broken_factory if failure == "opening" else ScriptedSandbox
    with LocalRunner(CONTEXT, num_workers=1, sandbox_factory=factory) as runner:
        runner.submit(Job(1, "ok:1" if failure == "opening" else "raise"))
        submitted.set()
        started = time.monotonic()
        with pytest.raises(SandboxError, match="sandbox worker failed"):
            runner.results(timeout_s=60.0)
        assert time.monotonic() - started < 5.0


def test_local_runner_pins_jax_to_cpu_without_gpus() -> None:
    with LocalRunner(CONTEXT, num_workers=1, sandbox_factory=ScriptedSandbox) as runner:
        runner.submit(Job(1, "env"))
        (result,) = collect(runner, 1)
    assert result.details == {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}


def test_worker_env_for_cpu_fractional_and_whole_gpus() -> None:
    assert worker_env(0.0) == {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    assert worker_env(0.25, ["1"]) == {
        "JAX_PLATFORMS": "cuda,cpu", "CUDA_VISIBLE_DEVICES": "1", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.225"
    }
    assert worker_env(2, ["0", "3"]) == {"JAX_PLATFORMS": "cuda,cpu", "CUDA_VISIBLE_DEVICES": "0,3"}
    assert worker_env(1) == {"JAX_PLATFORMS": "cuda,cpu"}


def test_sandbox_config_defaults_and_parsing() -> None:
    config = SandboxConfig.model_validate(
        {"backend": "docker", "num_workers": 4, "num_gpus_per_worker": 0.25, "ray_address": "ray://head:10001"}
    )
    assert (config.backend, config.runner, config.num_workers) == ("docker", "ray", 4)
    assert SandboxSpec.from_config(config).backend == "docker"
    assert SandboxConfig().ray_address is None
    with pytest.raises(ValidationError):
        config.num_workers = 3  # frozen


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"num_worker": 2}, "num_worker\n  Extra inputs are not permitted"),
        ({"backend": "kubernetes"}, "backend\n  Input should be 'process' or 'docker'"),
        ({"num_workers": 0}, "num_workers\n  Input should be greater than or equal to 1"),
        ({"num_gpus_per_worker": 1.5}, "expected a fraction below 1"),
        ({"ray_address": " "}, "found an empty string"),
    ],
)
def test_sandbox_config_rejects_bad_input(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SandboxConfig.model_validate(raw)


def test_make_runner_builds_a_local_runner() -> None:
    config = SandboxConfig(runner="local", num_workers=2)
    runner = make_runner(config, CONTEXT)
    try:
        assert isinstance(runner, LocalRunner) and runner.num_workers == 2
    finally:
        runner.close()


def test_evaluate_many_returns_results_in_job_order_and_refuses_a_repeated_id():
    from sandbox.pool import evaluate_many
    from sandbox.results import Job, Outcome, RunResult

    class Reversed:  # the Runner protocol's smallest form, finishing jobs in reverse order, one per poll
        num_workers = 1

        def __init__(self) -> None:
            self.waiting: list[Job] = []

        def submit(self, job: Job) -> None:
            self.waiting.append(job)

        def results(self, timeout_s: float) -> list[RunResult]:
            if not self.waiting:
                return []
            job = self.waiting.pop()
            return [RunResult(job.job_id + 100, Outcome.OK), RunResult(job.job_id, Outcome.OK, {"score": len(job.source)})]

        def in_flight(self) -> int:
            return len(self.waiting)

        def close(self) -> None:
            pass

    jobs = [Job(7, "a"), Job(3, "bbb"), Job(5, "cc")]
    assert [r.scores["score"] for r in evaluate_many(Reversed(), jobs)] == [1, 3, 2]
    with pytest.raises(ValueError, match="job id 7 is given twice"):
        evaluate_many(Reversed(), [Job(7, "a"), Job(7, "b")])
