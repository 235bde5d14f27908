"""The docker backend without a daemon: container settings, the in-container evaluation, reading replies."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.docker_backend import (
    RUNTIME_MEMORY_MB,
    container_settings,
    result_from_container,
    worker_init,
)
from sandbox.errors import SandboxError
from sandbox.results import Limits, Outcome, TaskContext

SCORE_PY = '''
import numpy as np

def score(candidate, x):
    return {"score": float(candidate.f(np.asarray(x)).sum()), "fitted_params": {"a": 1.0}}
'''


@pytest.fixture
def task(tmp_path: Path) -> TaskContext:
    (tmp_path / "score.py").write_text(SCORE_PY)
    return TaskContext(
        entry="score.py:score", payload={"x": [1.0, 2.0]}, function_name="f", allowed_imports=("numpy",),
        root=str(tmp_path), limits=Limits(timeout_s=30.0, memory_mb=512, max_processes=16),
    )


def test_container_settings_lock_the_container_down(task: TaskContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    settings = container_settings(task, task.limits, image="discover:test", job_dir="/tmp/job-1", uid=200_123,
                                  extra_env={"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}, cpus=2.0)
    assert settings["image"] == "discover:test"
    assert settings["network_mode"] == "none"
    assert settings["read_only"] is True and settings["auto_remove"] is True
    assert settings["user"] == "200123:200123"
    assert settings["mem_limit"] == settings["memswap_limit"] == f"{512 + RUNTIME_MEMORY_MB}m"
    assert settings["nano_cpus"] == 2_000_000_000
    assert settings["pids_limit"] == 16 + 64
    assert settings["cap_drop"] == ["ALL"] and "no-new-privileges" in settings["security_opt"]
    assert set(settings["tmpfs"]) == {"/scratch", "/tmp"}
    assert settings["volumes"] == {
        str(Path(task.root).resolve()): {"bind": "/task", "mode": "ro"},
        "/tmp/job-1": {"bind": "/job", "mode": "ro"},
    }
    environment = settings["environment"]
    assert "OPENAI_API_KEY" not in environment and "PATH" not in environment  # nothing from the host
    assert environment["JAX_PLATFORMS"] == "cpu" and "CUDA_VISIBLE_DEVICES" not in environment
    assert "device_requests" not in settings
    assert settings["command"][-3:] == ["-m", "sandbox.docker_backend", "/job"]


def test_container_settings_hand_over_ray_assigned_gpus(task: TaskContext) -> None:
    settings = container_settings(task, task.limits, image="i", job_dir="/j", uid=1,
                                  extra_env={"CUDA_VISIBLE_DEVICES": "2,3", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.225"})
    (request,) = settings["device_requests"]
    assert request["DeviceIDs"] == ["2", "3"] and request["Capabilities"] == [["gpu"]]
    environment = settings["environment"]
    assert "JAX_PLATFORMS" not in environment and "CUDA_VISIBLE_DEVICES" not in environment
    assert environment["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.225"


def test_a_container_with_gpus_bounds_private_memory_not_address_space(task: TaskContext) -> None:
    from sandbox import zygote
    from sandbox.docker_backend import DockerSandbox

    assert worker_init(task, root="/task", scratch="/scratch")["gpu"] is False
    init = worker_init(task, root="/task", scratch="/scratch", gpu=True)
    assert init["gpu"] is True and init["preload"] == ("numpy",)  # what the task allows, nothing more
    plan = dict(zygote.plan_limits(init["limits"], init["nproc_extra"], gpu=init["gpu"], vm_size_bytes=1 << 30,
                                   vm_data_bytes=1 << 28, jax_loaded=True, cpu_count=2))
    import resource

    assert resource.RLIMIT_DATA in plan and resource.RLIMIT_AS not in plan
    # The sandbox asks for GPU mode exactly when Ray handed its worker GPUs; no daemon is needed for that.
    for env, gpu in (({"CUDA_VISIBLE_DEVICES": "1"}, True), ({"JAX_PLATFORMS": "cpu"}, False)):
        sandbox = DockerSandbox(task, image="discover:latest", extra_env=env, client=object())
        try:
            assert pickle.loads((Path(sandbox._job_dir) / "context.pkl").read_bytes())["gpu"] is gpu
        finally:
            sandbox.close()


def test_entry_must_lie_under_the_mounted_root(task: TaskContext, tmp_path: Path) -> None:
    outside = TaskContext(entry="/etc/hostname:score", payload={}, function_name="f", root=task.root)
    with pytest.raises(SandboxError, match="outside the task root"):
        worker_init(outside, root="/task", scratch="/scratch")
    missing = TaskContext(entry="nope.py:score", payload={}, function_name="f", root=task.root)
    with pytest.raises(SandboxError, match="does not exist"):
        worker_init(missing, root="/task", scratch="/scratch")
    absolute = TaskContext(entry=f"{tmp_path / 'score.py'}:score", payload={}, function_name="f", root=task.root)
    assert worker_init(absolute, root="/task", scratch="/scratch")["entry"] == "score.py:score"


def run_container_main(task: TaskContext, tmp_path: Path, source: str) -> tuple[bytes, int]:
    """Runs the container's script here, as a plain process, with the job folder the host would mount."""
    job_dir, scratch = tmp_path / "job", tmp_path / "scratch"
    job_dir.mkdir(parents=True)
    scratch.mkdir(parents=True)
    init = worker_init(task, root=task.root, scratch=str(scratch))
    # Inside a container the script kills every process it can see after a candidate. It only does so as pid 1;
    # as a second guard it runs here in a pid namespace of its own (bubblewrap) or with that cleanup off.
    bwrap = shutil.which("bwrap")
    prefix = [bwrap, "--unshare-pid", "--die-with-parent", "--dev-bind", "/", "/", "--proc", "/proc"] if bwrap else []
    init["isolated"] = bool(bwrap)
    (job_dir / "context.pkl").write_bytes(pickle.dumps(init))
    (job_dir / "job.pkl").write_bytes(pickle.dumps({"job_id": 5, "source": source}))
    env = {"PATH": os.environ["PATH"], "JAX_PLATFORMS": "cpu", "OPENBLAS_NUM_THREADS": "1"}
    command = [*prefix, sys.executable, "-I", "-B", "-m", "sandbox.docker_backend", str(job_dir)]
    completed = subprocess.run(command, capture_output=True, env=env, timeout=120, cwd=Path(__file__).parents[3])
    return completed.stdout, completed.returncode


@pytest.mark.slow
def test_in_container_script_evaluates_ok_and_crashing_candidates(task: TaskContext, tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])  # a process outside: the script must leave it alone
    stdout, code = run_container_main(task, tmp_path / "a", "def f(x):\n    print('hello')\n    return x * 2\n")
    result = result_from_container(5, stdout, code, timed_out=False, wall_s=1.0, deadline_s=50, memory_mb=512)
    assert result.outcome is Outcome.OK, result.error
    assert result.scores["score"] == 6.0 and result.details["fitted_params"] == {"a": 1.0}
    assert result.output.strip() == "hello" and result.job_id == 5

    stdout, code = run_container_main(task, tmp_path / "b", "def f(x):\n    return {}['missing']\n")
    result = result_from_container(5, stdout, code, timed_out=False, wall_s=1.0, deadline_s=50, memory_mb=512)
    assert result.outcome is Outcome.CRASHED and "KeyError" in result.error
    assert bystander.poll() is None
    bystander.kill()


def test_results_without_a_reply() -> None:
    timed_out = result_from_container(1, b"", None, timed_out=True, wall_s=51.0, deadline_s=50, memory_mb=512)
    assert timed_out.outcome is Outcome.TIMEOUT and "50 s" in timed_out.error
    killed = result_from_container(1, b"", 137, timed_out=False, wall_s=3.0, deadline_s=50, memory_mb=512)
    assert killed.outcome is Outcome.OUT_OF_MEMORY and f"{512 + RUNTIME_MEMORY_MB} MiB" in killed.error
    garbage = result_from_container(1, b"\x00\x00\x00\x05{oops", 1, timed_out=False, wall_s=3.0, deadline_s=50,
                                    memory_mb=512)
    assert garbage.outcome is Outcome.WORKER_LOST and "status 1" in garbage.error


def test_docker_sandbox_without_a_daemon_says_what_to_do(task: TaskContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.docker_backend import DockerSandbox

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(SandboxError, match="needs a running Docker daemon.*sandbox.backend: process"):
        DockerSandbox(task, image="discover:latest")
