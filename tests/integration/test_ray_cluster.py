"""RayRunner against a real two-node Ray cluster: both nodes take work; a killed actor is replaced and retried."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from sandbox.pool import SandboxSpec  # noqa: E402
from sandbox.ray_pool import RayRunner  # noqa: E402
from sandbox.results import Job, Limits, Outcome, RunResult, TaskContext  # noqa: E402

pytestmark = pytest.mark.slow

SCORE_PY = '''
def score(candidate, x):
    return {"score": float(candidate.f(x))}
'''
QUICK = "def f(x):\n    return x + 1\n"
BUSY = "def f(x):\n    total = 0\n    for i in range(20_000_000):\n        total += i\n    return x + 1\n"


def collect(runner: RayRunner, expected: int, timeout_s: float = 120.0) -> list[RunResult]:
    results: list[RunResult] = []
    deadline = time.monotonic() + timeout_s
    while len(results) < expected and time.monotonic() < deadline:
        results += runner.results(timeout_s=1.0)
    return results


def test_jobs_spread_over_both_nodes_and_a_killed_actor_is_replaced(ray_cluster: str, tmp_path: Path) -> None:
    (tmp_path / "score.py").write_text(SCORE_PY)
    context = TaskContext(
        entry="score.py:score", payload={"x": 2.0}, function_name="f", allowed_imports=("math",),
        root=str(tmp_path), limits=Limits(timeout_s=60.0, memory_mb=2048),
    )
    assert not ray.is_initialized()
    with RayRunner(context, num_workers=2, ray_address=ray_cluster, sandbox_factory=SandboxSpec()) as runner:
        assert len([node for node in ray.nodes() if node["Alive"]]) == 2
        for job_id in range(4):
            runner.submit(Job(job_id, QUICK))
        results = collect(runner, 4)
        assert sorted(r.job_id for r in results) == [0, 1, 2, 3]
        assert all(r.outcome is Outcome.OK and r.scores["score"] == 3.0 for r in results), results
        assert len(set(runner.node_by_job.values())) == 2  # one actor (1 CPU each) per node

        # Kill one actor's process while both run a busy candidate: its job is retried on a new actor.
        pids = runner.actor_pids()
        runner.submit(Job(10, BUSY))
        runner.submit(Job(11, BUSY))
        time.sleep(0.5)
        os.kill(pids[0], signal.SIGKILL)
        results = {r.job_id: r for r in collect(runner, 2)}
        assert sorted(results) == [10, 11]
        assert all(r.outcome is Outcome.OK for r in results.values()), results
        assert runner.replacements == 1
        assert pids[0] not in runner.actor_pids()
    assert not ray.is_initialized()  # the runner connected, so it also disconnected


def test_discover_run_against_an_existing_cluster(ray_cluster: str, small_bandit_task: Path, tmp_path: Path):
    """`discover run --ray-address` uses the running cluster instead of starting its own Ray."""
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", str(small_bandit_task), "--db", str(tmp_path / "run.db"),
         "--ray-address", ray_cluster, "--workers", "2", "--max-evals", "6", "--json"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["evaluations"] == 6 and summary["best_score"] >= summary["seed_score"]
