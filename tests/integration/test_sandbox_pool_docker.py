"""The docker backend against a real Docker daemon and the image built from the repository's Dockerfile."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sandbox.docker_backend import DockerSandbox
from sandbox.pool import LocalRunner, SandboxSpec
from sandbox.results import Job, Limits, Outcome, RunResult, TaskContext

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = "discover:test-sandbox"
REPOSITORY = Path(__file__).resolve().parents[2]
SCORE_PY = '''
def score(candidate, x):
    return {"score": float(candidate.f(x))}
'''


@pytest.fixture(scope="module")
def image() -> str:
    """Builds the image from the repository's Dockerfile once (minutes the first time, cached after)."""
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        pytest.skip(f"no Docker daemon: {error}")
    client.images.build(path=str(REPOSITORY), tag=IMAGE, rm=True)
    return IMAGE


@pytest.fixture
def task(tmp_path: Path) -> TaskContext:
    (tmp_path / "score.py").write_text(SCORE_PY)
    return TaskContext(entry="score.py:score", payload={"x": 2.0}, function_name="f", allowed_imports=("math",),
                       root=str(tmp_path), limits=Limits(timeout_s=3.0, memory_mb=512))


def test_docker_sandbox_runs_ok_crashing_and_endless_candidates(image: str, task: TaskContext) -> None:
    with DockerSandbox(task, image=image, startup_grace_s=30.0) as sandbox:
        ok = sandbox.run(Job(1, "def f(x):\n    print('inside')\n    return x + 1\n"))
        assert ok.outcome is Outcome.OK and ok.scores["score"] == 3.0, ok.error
        assert ok.output.strip() == "inside"
        crashed = sandbox.run(Job(2, "def f(x):\n    return 1 / 0\n"))
        assert crashed.outcome is Outcome.CRASHED and "ZeroDivisionError" in crashed.error
        started = time.monotonic()
        endless = sandbox.run(Job(3, "def f(x):\n    while True:\n        x = x + 1\n"))
        assert endless.outcome is Outcome.TIMEOUT
        assert time.monotonic() - started < 3.0 + 30.0 + 15.0


def test_local_runner_with_docker_sandboxes(image: str, task: TaskContext) -> None:
    spec = SandboxSpec(backend="docker", docker_image=image, docker_startup_grace_s=30.0)
    with LocalRunner(task, num_workers=2, sandbox_factory=spec) as runner:
        for job_id in range(3):
            runner.submit(Job(job_id, f"def f(x):\n    return x * {job_id}\n"))
        results: list[RunResult] = []
        deadline = time.monotonic() + 120
        while len(results) < 3 and time.monotonic() < deadline:
            results += runner.results(timeout_s=1.0)
    assert sorted(r.scores["score"] for r in results) == [0.0, 2.0, 4.0]
