"""Shared integration fixtures: a real two-node Ray cluster on this machine."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# The `ray` command of the interpreter running the tests (e.g. .venv/bin/ray), else the one on PATH.
_NEXT_TO_PYTHON = Path(sys.executable).parent / "ray"
RAY = str(_NEXT_TO_PYTHON) if _NEXT_TO_PYTHON.exists() else (shutil.which("ray") or "ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ray(*arguments: str, temp_dir: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")
    completed = subprocess.run([RAY, *arguments], env=env, capture_output=True, text=True, timeout=120, cwd=temp_dir)
    if completed.returncode != 0:
        raise RuntimeError(f"ray {' '.join(arguments)} failed:\n{completed.stdout}\n{completed.stderr}")
    return completed.stdout


def _ray_start(*arguments: str, temp_dir: str) -> None:
    _ray("start", *arguments, "--disable-usage-stats", "--object-store-memory=200000000", temp_dir=temp_dir)


def _processes_of(temp_dir: str) -> set[int]:
    """Returns the pids of every process whose command line names `temp_dir`, and all their descendants."""
    parents: dict[int, int] = {}
    roots: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        if temp_dir in cmdline:
            roots.add(pid)
    found = set(roots)
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found - {os.getpid()}


def stop_ray_cluster(temp_dir: str) -> None:
    """Kills the processes of the cluster whose head was started with `--temp-dir=temp_dir`, and only those.

    `ray stop --force` would also kill every other Ray instance on the machine (other test sessions included).
    """
    for _ in range(3):
        pids = _processes_of(temp_dir)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _set_ray_auth_mode(mode: str | None) -> None:
    """Sets RAY_AUTH_MODE for this process and its children; None removes it."""
    if mode is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = mode
    try:  # Ray reads the mode into its C++ config when imported; re-read it (as ray.init does for a local start)
        from ray._raylet import Config

        Config.initialize("")
    except ImportError:
        pass


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """Starts a two-node Ray cluster on this machine and yields its address ("ip:port").

    The head has 1 CPU; the second node has 1 CPU and the custom resource {"node2": 1}. The head gets a
    private temp dir, so the cluster neither collides with nor is found by other Ray instances here.
    """
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    # Token authentication, as Ray (2.60 here) uses for a local ray.init(): every node and every driver must
    # agree, and a driver process that once started a local Ray has switched itself to token mode for good.
    # Nodes and drivers read the token from ~/.ray/auth_token; drivers need RAY_AUTH_MODE=token, which is set
    # here for this process and the commands it starts (e.g. `discover run --ray-address ...`).
    previous_mode = os.environ.get("RAY_AUTH_MODE")
    _set_ray_auth_mode("token")
    try:
        _ray("get-auth-token", "--generate", temp_dir=temp_dir)  # creates ~/.ray/auth_token only if missing
        _ray_start(
            "--head", f"--port={_free_port()}", "--num-cpus=1", "--include-dashboard=false",
            f"--temp-dir={temp_dir}", temp_dir=temp_dir,
        )
        address = (Path(temp_dir) / "ray_current_cluster").read_text().strip()
        _ray_start(f"--address={address}", "--num-cpus=1", '--resources={"node2": 1}', temp_dir=temp_dir)
        yield address
    finally:
        stop_ray_cluster(temp_dir)
        _set_ray_auth_mode(previous_mode)
