"""GPU mode of the process sandbox, checked as data: device binds, the environment and the rlimit plan."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from sandbox import Limits, ProcessSandbox, SandboxError, TaskContext, isolation, zygote

HERE = Path(__file__).parent
LIMITS = {"timeout_s": 10.0, "memory_mb": 1024, "max_processes": 16, "max_file_mb": 4, "max_output_kb": 16}
GPU_HOST = os.path.exists("/dev/nvidiactl")


def fake_dev(tmp_path: Path, mode: int = 0o666) -> Path:
    """A folder laid out like /dev on a machine with two GPUs (regular files stand in for the nodes)."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "null",
                 "nvidia-smi-log", "sda"):
        (dev / name).write_text(name)
        (dev / name).chmod(mode)
    (dev / "nvidia-caps").mkdir()
    return dev


def test_the_nvidia_nodes_that_exist_are_found(tmp_path: Path) -> None:
    dev = fake_dev(tmp_path)
    nodes = isolation.gpu_device_nodes(str(dev))
    assert nodes == [(str(dev / name), f"/dev/{name}") for name in
                     ("nvidia-caps", "nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools", "nvidia0", "nvidia1",
                      "nvidiactl")]
    assert isolation.gpu_device_nodes(str(tmp_path / "missing")) == []


def test_gpu_mode_binds_the_device_nodes_after_the_fresh_dev(tmp_path: Path) -> None:
    nodes = isolation.gpu_device_nodes(str(fake_dev(tmp_path)))
    gpu = isolation.bwrap_command("bwrap", ["python"], {}, task_root=str(tmp_path), as_root=True,
                                  device_nodes=nodes)
    text = " ".join(gpu)
    for host, inside in nodes:
        assert f"--dev-bind-try {host} {inside}" in text
        assert gpu.index(host) > gpu.index("--dev")
    cpu = isolation.bwrap_command("bwrap", ["python"], {}, task_root=str(tmp_path), as_root=True)
    assert not any(arg.startswith("--dev-bind") for arg in cpu)
    assert not any("nvidia" in arg for arg in cpu)


def test_library_folders_under_a_hidden_directory_stay_readable(tmp_path: Path) -> None:
    hidden = tmp_path / "run"
    libs = hidden / "nvidia" / "driver" / "lib"
    libs.mkdir(parents=True)
    (tmp_path / "task").mkdir()
    command = " ".join(isolation.bwrap_command("bwrap", ["python"], {}, task_root=str(tmp_path / "task"),
                                               as_root=True,
                                               hidden_paths=[str(hidden)], readable_paths=[str(libs)]))
    assert f"--tmpfs {hidden}" in command
    assert f"--ro-bind {libs} {libs}" in command
    assert command.index(f"--tmpfs {hidden}") < command.index(f"--ro-bind {libs} {libs}")


def test_jax_platforms_decides_the_mode() -> None:
    assert isolation.wants_cuda("cuda,cpu") and isolation.wants_cuda("gpu") and isolation.wants_cuda(" CUDA ")
    assert not isolation.wants_cuda("cpu") and not isolation.wants_cuda("")


def test_gpu_mode_passes_the_library_path_through(monkeypatch) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64")
    gpu = isolation.sandbox_env({}, gpu=True)
    assert gpu["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64" and gpu["CUDA_CACHE_DISABLE"] == "1"
    cpu = isolation.sandbox_env({})
    assert "LD_LIBRARY_PATH" not in cpu and "CUDA_CACHE_DISABLE" not in cpu


def test_usable_nodes_raise_no_problem(tmp_path: Path) -> None:
    nodes = isolation.gpu_device_nodes(str(fake_dev(tmp_path)))
    assert isolation.gpu_device_problem(nodes, drop_uid=250_000) == ""


def test_nodes_the_dropped_uid_cannot_open_are_named(tmp_path: Path) -> None:
    nodes = isolation.gpu_device_nodes(str(fake_dev(tmp_path, mode=0o660)))
    problem = isolation.gpu_device_problem(nodes, drop_uid=250_000)
    assert "candidates run as uid 250000, which has no groups and cannot open" in problem
    assert f"{tmp_path}/dev/nvidiactl (mode 0660)" in problem
    assert "chmod 0666 /dev/nvidia*" in problem


def test_missing_nodes_are_named(tmp_path: Path) -> None:
    assert "has no NVIDIA device nodes" in isolation.gpu_device_problem([], drop_uid=None)
    dev = fake_dev(tmp_path)
    (dev / "nvidia-uvm").unlink()
    problem = isolation.gpu_device_problem(isolation.gpu_device_nodes(str(dev)), drop_uid=None)
    assert "/dev/nvidia-uvm does not exist" in problem and "nvidia-modprobe -u -c=0" in problem


def plan(gpu: bool, jax_loaded: bool = True) -> dict[int, int]:
    return dict(zygote.plan_limits(LIMITS, 40, gpu=gpu, vm_size_bytes=400 << 20, vm_data_bytes=100 << 20,
                                   jax_loaded=jax_loaded, cpu_count=2))


def test_cpu_mode_bounds_the_address_space() -> None:
    limits = plan(gpu=False)
    assert limits[resource.RLIMIT_AS] == (400 + zygote.JAX_BACKEND_RESERVE_MB + 1024) << 20
    assert resource.RLIMIT_DATA not in limits
    assert plan(gpu=False, jax_loaded=False)[resource.RLIMIT_AS] == (400 + 1024) << 20


def test_gpu_mode_bounds_private_writable_memory_instead() -> None:
    limits = plan(gpu=True)
    reserve_mb = zygote.JAX_BACKEND_DATA_RESERVE_MB + zygote.GPU_BACKEND_DATA_RESERVE_MB
    assert limits[resource.RLIMIT_DATA] == (100 + reserve_mb + 1024) << 20
    assert resource.RLIMIT_AS not in limits
    assert plan(gpu=True, jax_loaded=False)[resource.RLIMIT_DATA] == (100 + 1024) << 20


def test_both_modes_keep_the_other_limits() -> None:
    for gpu in (False, True):
        limits = plan(gpu)
        assert limits[resource.RLIMIT_CPU] == 21
        assert limits[resource.RLIMIT_NPROC] == 16 + 40
        assert limits[resource.RLIMIT_FSIZE] == 4 << 20
        assert limits[resource.RLIMIT_CORE] == 0


def context() -> TaskContext:
    return TaskContext(entry="entry_call.py:score", payload={}, function_name="agent", root=str(HERE),
                       limits=Limits(**LIMITS))


def test_the_mode_follows_jax_platforms_unless_given() -> None:
    assert ProcessSandbox(context(), extra_env={"JAX_PLATFORMS": "cpu"}).gpu is False
    assert ProcessSandbox(context(), extra_env={"JAX_PLATFORMS": "cpu"}, gpu=True).gpu is True
    if GPU_HOST:
        assert ProcessSandbox(context(), extra_env={"JAX_PLATFORMS": "cuda,cpu"}).gpu is True


@pytest.mark.skipif(GPU_HOST, reason="this machine has NVIDIA device nodes")
def test_asking_for_cuda_without_a_gpu_fails_at_once() -> None:
    with pytest.raises(SandboxError, match=r"no NVIDIA device nodes.*JAX_PLATFORMS='cuda,cpu'"):
        ProcessSandbox(context(), extra_env={"JAX_PLATFORMS": "cuda,cpu"})


def test_a_worker_holding_a_gpu_device_open_is_unsafe_to_fork(tmp_path: Path) -> None:
    fds = tmp_path / "fd"
    fds.mkdir()
    (fds / "0").symlink_to("/dev/null")
    (fds / "3").symlink_to("/usr/lib/x86_64-linux-gnu/libcuda.so.1")  # loaded, not started: harmless
    assert zygote.open_gpu_device(str(fds)) == ""
    (fds / "4").symlink_to("/dev/nvidiactl")
    assert zygote.open_gpu_device(str(fds)) == "/dev/nvidiactl"
