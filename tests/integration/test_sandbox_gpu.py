"""GPU mode of the process sandbox with real workers.

Without a GPU, GPU mode is run with JAX forced onto the CPU: the device nodes bwrap binds, and RLIMIT_DATA
(which replaces RLIMIT_AS there) stopping a 50 GB allocation. The test marked `gpu` runs where a CUDA device
exists (`pytest -m gpu`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sandbox import Job, Limits, Outcome, ProcessSandbox, TaskContext, isolation
from sandbox.config import SandboxConfig
from sandbox.runners import make_runner

HERE = Path(__file__).resolve().parents[1] / "unit" / "sandbox"
TIMEOUT_S = 20.0
LIMITS = Limits(timeout_s=TIMEOUT_S, memory_mb=512, max_processes=16, max_file_mb=4, max_output_kb=16)
needs_bwrap = pytest.mark.skipif(isolation.find_bwrap() is None, reason="needs bubblewrap (bwrap)")

# Reports the candidate's memory limits and what it sees of /dev, as details.
LIMITS_PROBE = """import resource, os
def agent(x):
    return {"score": 1.0, "as": resource.getrlimit(resource.RLIMIT_AS)[0],
            "data": resource.getrlimit(resource.RLIMIT_DATA)[0], "dev": sorted(os.listdir("/dev"))}
"""
# 50 GB in 512 MB blocks that are never touched: without a limit on private writable memory this succeeds
# (each block alone passes the kernel's overcommit check), so only RLIMIT_DATA can stop it.
FIFTY_GB = """import numpy as np
def agent(x):
    blocks = [np.empty(512 << 20, dtype=np.uint8) for _ in range(100)]
    return float(len(blocks))
"""
HONEST_JAX = ("import numpy as np\nimport jax\nimport jax.numpy as jnp\n"
              "def agent(x):\n    return float(np.sum(np.ones(3))) + float(jax.jit(jnp.sum)(jnp.ones(2)))\n")


@pytest.fixture(scope="module")
def task_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("task")
    root.chmod(0o755)
    shutil.copy(HERE / "entry_call.py", root / "entry_call.py")
    return root


def context(root: Path, limits: Limits = LIMITS) -> TaskContext:
    return TaskContext(entry="entry_call.py:score", payload={"x": 2.0}, function_name="agent",
                       allowed_imports=("*",), root=str(root), limits=limits)


@pytest.fixture(scope="module")
def gpu_mode_on_cpu(task_root: Path):
    with ProcessSandbox(context(task_root), gpu=True, extra_env={"JAX_PLATFORMS": "cpu"}) as sandbox:
        yield sandbox


def test_gpu_mode_bounds_private_memory_not_the_address_space(gpu_mode_on_cpu) -> None:
    result = gpu_mode_on_cpu.run(Job(1, LIMITS_PROBE))
    assert result.outcome is Outcome.OK, result.error
    assert result.details["as"] == -1  # RLIM_INFINITY
    assert 512 << 20 < result.details["data"] < 8 << 30


def test_a_jax_candidate_runs_under_rlimit_data(gpu_mode_on_cpu) -> None:
    result = gpu_mode_on_cpu.run(Job(2, HONEST_JAX))
    assert result.outcome is Outcome.OK, result.error
    assert result.scores["score"] == 5.0


@pytest.mark.parametrize("source", [FIFTY_GB, "def agent(x):\n    block = bytearray(50 * 2**30)\n    return 1.0\n"])
def test_allocating_50_gb_under_rlimit_data_is_out_of_memory(gpu_mode_on_cpu, source: str) -> None:
    result = gpu_mode_on_cpu.run(Job(3, source))
    assert result.outcome is Outcome.OUT_OF_MEMORY, result.error
    assert result.wall_time_s - result.timings["startup"] < TIMEOUT_S  # stopped by the limit, not the clock
    assert gpu_mode_on_cpu.run(Job(4, HONEST_JAX)).scores == {"score": 5.0}


def test_memory_within_memory_mb_is_allowed(gpu_mode_on_cpu) -> None:
    touched = "import numpy as np\ndef agent(x):\n    return float(np.ones(300 << 17).sum() / (300 << 17))\n"
    result = gpu_mode_on_cpu.run(Job(5, touched))  # 300 MB, touched, under memory_mb=512
    assert result.outcome is Outcome.OK, result.error


@pytest.mark.slow
def test_cpu_mode_still_bounds_the_address_space(task_root: Path) -> None:
    with ProcessSandbox(context(task_root)) as sandbox:
        assert sandbox.gpu is False
        probe = sandbox.run(Job(1, LIMITS_PROBE))
        assert probe.outcome is Outcome.OK, probe.error
        assert 512 << 20 < probe.details["as"] < 8 << 30 and probe.details["data"] == -1
        assert sandbox.run(Job(2, FIFTY_GB)).outcome is Outcome.OUT_OF_MEMORY


@needs_bwrap
def test_device_nodes_are_bound_into_the_fresh_dev(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidiactl"):
        (dev / name).write_text(f"fake {name}\n")
    command = isolation.bwrap_command(isolation.find_bwrap(), ["/bin/sh", "-c", "cat /dev/nvidia0 /dev/nvidiactl"],
                                      {"PATH": "/usr/bin:/bin"}, task_root=str(tmp_path),
                                      device_nodes=isolation.gpu_device_nodes(str(dev)))
    shown = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert shown.stdout == "fake nvidia0\nfake nvidiactl\n", shown.stderr
    without = subprocess.run(command[:command.index("--dev-bind-try")] + command[command.index("--chdir"):],
                             capture_output=True, text=True, timeout=60)
    assert without.returncode != 0 and "nvidia0" in without.stderr


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("runner", ["local", "ray"])
def test_a_candidate_sees_the_gpu_through_make_runner(task_root: Path, runner: str) -> None:
    probe = ("import jax\nimport jax.numpy as jnp\n"
             "def agent(x):\n"
             "    total = float(jax.jit(jnp.sum)(jnp.ones(1000)))\n"
             "    with open('/proc/self/status') as status:\n"
             "        vm = {k: v.split()[0] for k, v in (l.split(':', 1) for l in status) if k.startswith('Vm')}\n"
             "    return {'score': total, 'platforms': [d.platform for d in jax.devices()],\n"
             "            'default': jnp.ones(1).devices().pop().platform, 'vm_kb': vm}\n")
    config = SandboxConfig(runner=runner, num_workers=1, num_gpus_per_worker=0.5)
    limits = Limits(timeout_s=300, memory_mb=4096)
    with make_runner(config, context(task_root, limits)) as pool:
        pool.submit(Job(1, probe))
        results = []
        while not results:
            results = pool.results(timeout_s=600)
    result = results[0]
    assert result.outcome is Outcome.OK, result.error
    assert result.scores["score"] == 1000.0
    assert "gpu" in result.details["platforms"] and result.details["default"] == "gpu", result.details
    # The candidate's memory after starting CUDA: compare VmData with zygote.GPU_BACKEND_DATA_RESERVE_MB.
    print(f"{runner}: {result.details}")
