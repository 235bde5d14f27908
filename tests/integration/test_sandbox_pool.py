"""RayRunner on a private local Ray instance: dispatch, replacement of dead actors, retries, the watchdog."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from sandbox.errors import SandboxError  # noqa: E402
from sandbox.pool import SandboxSpec  # noqa: E402
from sandbox.ray_pool import RayRunner, _init_ray  # noqa: E402
from sandbox.results import Job, Limits, Outcome, RunResult, TaskContext  # noqa: E402

pytestmark = pytest.mark.slow

# The scripted sandbox below lives in this test module, which Ray workers cannot import: ship it by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SCORE_PY = '''
def score(candidate, x):
    return {"score": float(candidate.f(x)), "pid": float(__import__("os").getpid())}
'''


class ScriptedSandbox:
    """A sandbox whose job sources are instructions, run inside the actor's own process.

    "ok:<score>", "sleep:<seconds>", "die" (the actor process exits), "die-once:<marker file>" (exits the
    first time, returns OK once the marker exists), "pid" (returns the actor's pid as score).
    """

    def __init__(self, context: TaskContext, extra_env: Mapping[str, str]) -> None:
        if context.function_name == "broken":
            raise SandboxError("cannot open")
        self.extra_env = dict(extra_env)

    def run(self, job: Job) -> RunResult:
        command, _, argument = job.source.partition(":")
        if command == "sleep":
            time.sleep(float(argument))
        elif command == "die":
            os._exit(3)
        elif command == "die-once":
            marker = Path(argument)
            if not marker.exists():
                marker.touch()
                os._exit(3)
            return RunResult(job.job_id, Outcome.OK, scores={"score": 1.0})
        elif command == "pid":
            return RunResult(job.job_id, Outcome.OK, scores={"score": float(os.getpid())})
        elif command == "env":
            return RunResult(job.job_id, Outcome.OK, scores={"score": 0.0}, details=self.extra_env)
        return RunResult(job.job_id, Outcome.OK, scores={"score": float(argument or 0)})

    def close(self) -> None:
        pass


def context(function_name: str = "f", timeout_s: float = 10.0, root: str = ".") -> TaskContext:
    return TaskContext(
        entry="score.py:score",
        payload={"x": 2.0},
        function_name=function_name,
        allowed_imports=("math",),
        root=root,
        limits=Limits(timeout_s=timeout_s, memory_mb=1024),
    )


def collect(runner: RayRunner, expected: int, timeout_s: float = 60.0) -> list[RunResult]:
    results: list[RunResult] = []
    deadline = time.monotonic() + timeout_s
    while len(results) < expected and time.monotonic() < deadline:
        results += runner.results(timeout_s=1.0)
    return results


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One private local Ray instance for the whole module, started the way RayRunner starts it."""
    _init_ray(None, num_cpus=3)
    yield
    ray.shutdown()


def test_runs_every_job_keeps_actors_busy_and_pins_cpu() -> None:
    with RayRunner(context(), num_workers=2, sandbox_factory=ScriptedSandbox) as runner:
        for job_id in range(8):
            runner.submit(Job(job_id, "pid"))
        runner.submit(Job(100, "env"))
        assert runner.in_flight() == 9
        results = collect(runner, 9)
        assert sorted(r.job_id for r in results) == [*range(8), 100]
        assert all(r.outcome is Outcome.OK for r in results)
        assert len({r.scores["score"] for r in results if r.job_id < 100}) == 2  # both actors took work
        assert next(r for r in results if r.job_id == 100).details["JAX_PLATFORMS"] == "cpu"
        assert runner.in_flight() == 0 and runner.results(timeout_s=0.0) == []
        assert set(runner.node_by_job) == {*range(8), 100}


def test_dead_actor_is_replaced_and_its_job_retried(tmp_path: Path) -> None:
    with RayRunner(context(), num_workers=2, sandbox_factory=ScriptedSandbox) as runner:
        runner.submit(Job(1, f"die-once:{tmp_path / 'died'}"))
        for job_id in range(2, 6):
            runner.submit(Job(job_id, "ok:1"))
        results = {r.job_id: r for r in collect(runner, 5)}
        assert sorted(results) == [1, 2, 3, 4, 5]
        assert all(r.outcome is Outcome.OK for r in results.values())
        assert runner.replacements == 1


def test_jobs_waiting_in_numbers_share_calls_and_a_lost_call_is_retried(tmp_path: Path) -> None:
    with RayRunner(context(), num_workers=1, sandbox_factory=ScriptedSandbox, max_jobs_per_call=4) as runner:
        runner.submit(Job(0, "sleep:0.5"))  # the actor's two calls fill up; the rest wait and then share calls
        for job_id in range(1, 12):
            runner.submit(Job(job_id, f"ok:{job_id}"))
        runner.submit(Job(12, f"die-once:{tmp_path / 'died'}"))  # in a call with others: all of it is retried
        results = {r.job_id: r for r in collect(runner, 13)}
        assert sorted(results) == list(range(13))
        assert all(r.outcome is Outcome.OK for r in results.values())
        assert all(results[j].scores == {"score": float(j)} for j in range(1, 12))
        assert runner.replacements == 1
        assert runner.calls_made < 13


def test_job_that_kills_its_worker_twice_is_worker_lost() -> None:
    with RayRunner(context(), num_workers=1, sandbox_factory=ScriptedSandbox) as runner:
        runner.submit(Job(1, "die"))
        runner.submit(Job(2, "ok:2"))  # queued behind the dying job: resent, not charged
        results = {r.job_id: r for r in collect(runner, 2)}
        assert results[1].outcome is Outcome.WORKER_LOST
        assert "actor died" in results[1].error
        assert results[2].outcome is Outcome.OK and results[2].scores == {"score": 2.0}
        assert runner.replacements == 2


def test_hung_actor_is_killed_and_its_job_timed_out() -> None:
    with RayRunner(context(timeout_s=0.5), num_workers=1, sandbox_factory=ScriptedSandbox,
                   watchdog_grace_s=1.0) as runner:
        runner.submit(Job(1, "sleep:60"))
        runner.submit(Job(2, "ok:1"))
        results = {r.job_id: r for r in collect(runner, 2, timeout_s=30.0)}
        assert results[1].outcome is Outcome.TIMEOUT and "did not answer within 2 s" in results[1].error
        assert results[2].outcome is Outcome.OK


def test_sandbox_that_cannot_open_raises() -> None:
    with RayRunner(context("broken"), num_workers=1, sandbox_factory=ScriptedSandbox) as runner:
        runner.submit(Job(1, "ok:1"))
        with pytest.raises(SandboxError, match="could not start.*cannot open"):
            collect(runner, 1)


def test_process_sandbox_in_actors(tmp_path: Path) -> None:
    pytest.importorskip("sandbox.process")
    (tmp_path / "score.py").write_text(SCORE_PY)
    sources = {1: "def f(x):\n    return x + 1\n", 2: "def f(x):\n    return 1 / 0\n", 3: "def f(x:\n"}
    with RayRunner(context(root=str(tmp_path)), num_workers=2, sandbox_factory=SandboxSpec()) as runner:
        for job_id, source in sources.items():
            runner.submit(Job(job_id, source))
        results = {r.job_id: r for r in collect(runner, 3)}
    assert results[1].outcome is Outcome.OK and results[1].scores["score"] == 3.0
    assert results[2].outcome is Outcome.CRASHED
    assert results[3].outcome is Outcome.SYNTAX_ERROR
