"""`DockerSandbox`: runs each candidate in a fresh container of the project's image (see the repository Dockerfile).

For clusters where bubblewrap is not available or not trusted enough: every candidate gets a new container
with no network, a read-only root, a tmpfs scratch, memory/CPU/process limits, an unprivileged uid and an
environment built from scratch (nothing of the host's). The container runs this module as a script
(`python -m sandbox.docker_backend /job`), which evaluates the candidate exactly as the process sandbox's worker
does (`sandbox/zygote.py`: fork, rlimits, build the module, call the entry, classify) and writes one JSON
reply to its stdout. The host kills the container after `startup_grace_s + timeout_s`.

Mounts: the task root read-only at /task, and a host folder with the task context and the job (pickles written
by the host) read-only at /job. Both are paths on the machine running the Docker daemon, so the sandbox must run
on that machine (as Ray workers do with `docker.from_env()`).

Cost: a container start plus Python and JAX imports per candidate (seconds), against milliseconds for a
warm `ProcessSandbox`; use it where isolation matters more than throughput.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sandbox import isolation, zygote
from sandbox.errors import SandboxError
from sandbox.process import preload_for
from sandbox.results import Job, Limits, Outcome, RunResult, TaskContext
from sandbox.static_check import check_source

#: Inside the container: where the task root and the job folder are mounted, and the scratch tmpfs.
TASK_MOUNT = "/task"
JOB_MOUNT = "/job"
SCRATCH_MOUNT = "/scratch"

#: Memory (MiB) granted beyond `memory_mb` for Python, numpy and JAX themselves (measured ~0.5 GiB RSS).
RUNTIME_MEMORY_MB = 1024
#: Processes beyond `max_processes` for the threads of XLA's pools (the cgroup limit counts threads).
RUNTIME_PIDS = 64
#: Bytes of stdout read from a container: the reply frame and nothing much beyond.
MAX_STDOUT_BYTES = 2 * zygote.MAX_RESULT_BYTES + (1 << 20)


def container_settings(
    context: TaskContext,
    limits: Limits,
    *,
    image: str,
    job_dir: str,
    uid: int,
    extra_env: Mapping[str, str] | None = None,
    cpus: float = 1.0,
    scratch_mb: int = 256,
) -> dict[str, Any]:
    """Returns the keyword arguments for `docker.from_env().containers.create(...)` for one candidate.

    Args:
        context: the task; its `root` is mounted read-only at /task.
        limits: memory (memory_mb + RUNTIME_MEMORY_MB, no swap), processes (max_processes + RUNTIME_PIDS).
        image: the image built from the repository's Dockerfile.
        job_dir: host folder holding `context.pkl` and `job.pkl`, mounted read-only at /job.
        uid: the unprivileged uid (and gid) the container runs as.
        extra_env: worker variables (JAX_PLATFORMS, CUDA_VISIBLE_DEVICES, XLA_PYTHON_CLIENT_MEM_FRACTION).
            CUDA_VISIBLE_DEVICES selects the host GPUs handed to the container, which sees them as 0, 1, ...
        cpus: CPU cores the container may use.
        scratch_mb: size of the writable tmpfs at /scratch (also /tmp), in MiB.
    """
    from docker.types import DeviceRequest

    env = dict(extra_env or {})
    gpu_ids = [i for i in env.pop("CUDA_VISIBLE_DEVICES", "").split(",") if i.strip()]
    environment = {
        "HOME": SCRATCH_MOUNT,
        "TMPDIR": SCRATCH_MOUNT,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    if not gpu_ids:
        environment["JAX_PLATFORMS"] = "cpu"
    environment.update(env)
    memory_mb = limits.memory_mb + RUNTIME_MEMORY_MB
    settings: dict[str, Any] = {
        "image": image,
        "command": ["python", "-I", "-B", "-u", "-m", "sandbox.docker_backend", JOB_MOUNT],
        "user": f"{uid}:{uid}",
        "environment": environment,
        "working_dir": SCRATCH_MOUNT,
        "network_mode": "none",
        "mem_limit": f"{memory_mb}m",
        "memswap_limit": f"{memory_mb}m",
        "nano_cpus": int(cpus * 1e9),
        "pids_limit": limits.max_processes + RUNTIME_PIDS,
        "read_only": True,
        "tmpfs": {
            SCRATCH_MOUNT: f"rw,nosuid,nodev,size={scratch_mb}m,mode=1777",
            "/tmp": f"rw,nosuid,nodev,size={scratch_mb}m,mode=1777",
        },
        "volumes": {
            str(Path(context.root).resolve()): {"bind": TASK_MOUNT, "mode": "ro"},
            job_dir: {"bind": JOB_MOUNT, "mode": "ro"},
        },
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "ipc_mode": "private",
        "auto_remove": True,
        "stdin_open": False,
        "tty": False,
        "labels": {"discover.sandbox": "candidate"},
    }
    if gpu_ids:
        settings["device_requests"] = [DeviceRequest(device_ids=gpu_ids, capabilities=[["gpu"]])]
    return settings


def worker_init(context: TaskContext, *, root: str, scratch: str, gpu: bool = False,
                stage: str = "run") -> dict[str, Any]:
    """Returns the init message of `sandbox/zygote.py`'s `Worker` for a task mounted at `root`.

    `gpu`: the container is handed GPUs. The candidate's process then bounds its private writable memory
    (RLIMIT_DATA) instead of its address space, which CUDA reserves far beyond any memory limit (see
    `zygote.plan_limits`); the container's own memory limit still applies on top.
    """
    entry_path, _, function = context.entry.rpartition(":")
    if not entry_path or not function:
        raise SandboxError(f"TaskContext.entry = {context.entry!r}; expected 'path/to/score.py:function'.")
    host_root = Path(context.root).resolve()
    if Path(entry_path).is_absolute():
        try:
            entry_path = str(Path(entry_path).resolve().relative_to(host_root))
        except ValueError:
            raise SandboxError(
                f"TaskContext.entry = {context.entry!r} lies outside the task root {host_root}, which is the only "
                "folder mounted into the container; move the entry under the root or give a relative path."
            ) from None
    if not (host_root / entry_path).is_file():
        raise SandboxError(f"TaskContext.entry = {context.entry!r}, but {host_root / entry_path} does not exist.")
    return {
        "entry": f"{entry_path}:{function}",
        "root": root,
        "function_name": context.function_name,
        "payload": pickle.dumps(dict(context.payload), protocol=pickle.HIGHEST_PROTOCOL),
        "preload": preload_for(context.allowed_imports),
        "limits": asdict(context.limits),
        "scratch": scratch,
        "scratch_keep": [],  # nothing is bound into the container's scratch tmpfs
        "drop_uid": None,  # the container already runs as an unprivileged uid
        "isolated": True,  # its own pid namespace: processes left behind are killed (only when we are pid 1)
        "nproc_extra": RUNTIME_PIDS,
        "gpu": gpu,
        "stage": stage,
        "inputs": list(context.inputs or ()),
    }


def result_from_container(
    job_id: int, stdout: bytes, exit_code: int | None, *, timed_out: bool, wall_s: float, deadline_s: float,
    memory_mb: int, stage: str = "run",
) -> RunResult:
    """Returns the RunResult for one container from its stdout (one reply frame) and its exit status."""
    from sandbox.process import _result_from_reply

    if timed_out:
        return RunResult(job_id, Outcome.TIMEOUT, wall_time_s=wall_s,
                         error=f"no result within {deadline_s:g} s (startup grace + timeout_s); the container was killed")
    reply = _parse_reply(stdout)
    if reply is not None and reply.get("type") == "result":
        return _result_from_reply(job_id, reply, 0.0, wall_s, stage=stage)
    if reply is not None and reply.get("type") == "error":
        raise SandboxError(f"the container could not load the task: {reply.get('message', '')}")
    if exit_code == 137:
        return RunResult(job_id, Outcome.OUT_OF_MEMORY, wall_time_s=wall_s,
                         error=f"the container was killed (exit status 137), most likely at its memory limit "
                               f"of {memory_mb + RUNTIME_MEMORY_MB} MiB")
    return RunResult(job_id, Outcome.WORKER_LOST, wall_time_s=wall_s,
                     error=f"the container exited with status {exit_code} without a reply")


def _parse_reply(stdout: bytes) -> dict[str, Any] | None:
    header = zygote._HEADER.size
    if len(stdout) < header:
        return None
    (size,) = zygote._HEADER.unpack(stdout[:header])
    body = stdout[header:header + size]
    if size > MAX_STDOUT_BYTES or len(body) != size:
        return None
    try:
        reply = json.loads(body)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


class DockerSandbox:
    """Runs each candidate in a fresh container of `image`; same interface as `ProcessSandbox`.

    Args:
        context: the task's entry, payload, evolved function name, allowed imports and limits.
        image: the image built from the repository's Dockerfile (`docker build -t discover:latest .`).
        extra_env: worker variables for the container (see `container_settings`); nothing else is passed.
        startup_grace_s: seconds added to timeout_s for starting the container and importing JAX.
        cpus: CPU cores each container may use.
        client: a `docker.DockerClient`; default `docker.from_env()`.
    """

    def __init__(self, context: TaskContext, *, image: str, extra_env: Mapping[str, str] | None = None,
                 startup_grace_s: float = 20.0, cpus: float = 1.0, client: Any = None, stage: str = "run") -> None:
        if stage not in ("run", "trace"):
            raise SandboxError(f"a DockerSandbox runs the 'run' or 'trace' stage; got {stage!r} (the trusted "
                               "'score' stage runs in a ProcessSandbox on the host).")
        self.stage = stage
        self.context = context
        self.image = image
        self.extra_env = dict(extra_env or {})
        self.startup_grace_s = startup_grace_s
        self.cpus = cpus
        self.uid = isolation.allocate_uid()
        gpus = [i for i in self.extra_env.get("CUDA_VISIBLE_DEVICES", "").split(",") if i.strip()]
        init = worker_init(context, root=TASK_MOUNT, scratch=SCRATCH_MOUNT, gpu=bool(gpus) and stage == "run",
                           stage=stage)
        if client is None:
            import docker
            import docker.errors

            try:
                client = docker.from_env()
                client.ping()
            except docker.errors.DockerException as error:
                raise SandboxError(
                    f"the docker backend needs a running Docker daemon, but none answered ({error}). Start Docker, "
                    "set DOCKER_HOST, or use sandbox.backend: process."
                ) from error
        self._client = client
        self._job_dir = tempfile.mkdtemp(prefix="discover-docker-")
        os.chmod(self._job_dir, 0o755)
        _write_private(Path(self._job_dir) / "context.pkl", pickle.dumps(init))
        self._lock = threading.Lock()
        self._closed = False

    def run(self, job: Job, exported: str | None = None) -> RunResult:
        """Evaluates (or, in the "trace" stage, traces) one candidate in a new container; never raises for anything
        the candidate does."""
        started = time.perf_counter()
        if job.rejection:
            return RunResult(job.job_id, Outcome.INVALID_OUTPUT, error=job.rejection)
        rejection = check_source(job.source, self.context.allowed_imports)
        if rejection is not None:
            return RunResult(job.job_id, rejection.outcome, error=rejection.message,
                             wall_time_s=time.perf_counter() - started)
        with self._lock:
            if self._closed:
                raise SandboxError("this DockerSandbox is closed; create a new one to run more jobs.")
            message = {"job_id": job.job_id, "source": job.source, "parameters": [list(p) for p in job.parameters]}
            if self.stage == "trace" and job.lifted_source:
                message.update(lifted_source=job.lifted_source, constants=[name for name, _ in job.constants])
            _write_private(Path(self._job_dir) / "job.pkl", pickle.dumps(message))
            stdout, exit_code, timed_out = self._run_container()
        limits = self.context.limits
        return result_from_container(
            job.job_id, stdout, exit_code, timed_out=timed_out, wall_s=time.perf_counter() - started,
            deadline_s=self.startup_grace_s + limits.timeout_s, memory_mb=limits.memory_mb, stage=self.stage,
        )

    def close(self) -> None:
        """Removes the job folder. Safe to call twice; containers remove themselves."""
        with self._lock:
            self._closed = True
            shutil.rmtree(self._job_dir, ignore_errors=True)

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run_container(self) -> tuple[bytes, int | None, bool]:
        """Starts one container and returns (stdout, exit status, whether it was killed at the deadline)."""
        import docker.errors

        settings = container_settings(self.context, self.context.limits, image=self.image, job_dir=self._job_dir,
                                      uid=self.uid, extra_env=self.extra_env, cpus=self.cpus)
        try:
            container = self._client.containers.create(**settings)
        except docker.errors.ImageNotFound as error:
            raise SandboxError(f"docker image {self.image!r} not found; build it with "
                               f"`docker build -t {self.image} .` in the repository root") from error
        # Attach before starting: the output stream then holds everything, and it ends when the container exits,
        # which is race-free even though the container removes itself (asking for its status afterwards is not).
        stream = container.attach(stdout=True, stderr=False, stream=True, logs=True)
        stdout = bytearray()
        reader = threading.Thread(target=_read_stream, args=(stream, stdout), daemon=True)
        reader.start()
        try:
            container.start()
        except docker.errors.APIError as error:
            container.remove(force=True)
            raise SandboxError(f"docker could not start a container of {self.image!r}: {error}") from error
        reader.join(timeout=self.startup_grace_s + self.context.limits.timeout_s)
        if reader.is_alive():
            try:
                container.kill()
            except docker.errors.APIError:  # it exited (and was removed) meanwhile
                pass
            reader.join(timeout=10.0)
            return bytes(stdout), None, True
        return bytes(stdout), _exit_code(container), False


def _exit_code(container: Any) -> int | None:
    """Returns the exit status of a container that has exited, or None once it has removed itself."""
    import docker.errors
    import requests.exceptions

    try:
        return int(container.wait(timeout=10)["StatusCode"])
    except (docker.errors.DockerException, requests.exceptions.RequestException, KeyError, ValueError):
        return None


def _read_stream(stream: Any, into: bytearray) -> None:
    try:
        for chunk in stream:
            if len(into) < MAX_STDOUT_BYTES:
                into += chunk[: MAX_STDOUT_BYTES - len(into)]
    except Exception:  # the connection closes when the container is killed and removed
        pass


def _write_private(path: Path, data: bytes) -> None:
    """Writes a file readable by the container's unprivileged uid (the folder itself is not listed elsewhere)."""
    path.write_bytes(data)
    os.chmod(path, 0o644)


# --------------------------------------------------------------------------------------------- in the container
def container_main(job_dir: str) -> int:
    """Evaluates the job in `job_dir` and writes one reply frame to stdout; runs inside the container."""
    reply_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # stray prints from imports must not corrupt the reply
    zygote._set_not_dumpable()  # the candidate (same uid) must not reach our stdout through /proc
    with open(os.path.join(job_dir, "context.pkl"), "rb") as file:
        init = pickle.load(file)
    with open(os.path.join(job_dir, "job.pkl"), "rb") as file:
        job = pickle.load(file)
    # "isolated" makes the worker kill every other process it can see after each candidate: right inside the
    # container's own pid namespace (where this script is pid 1), never anywhere else.
    init["isolated"] = bool(init.get("isolated")) and os.getpid() == 1
    # The worker's command and reply channels are unused here; the forked child closes them.
    worker = zygote.Worker(init, os.dup(devnull), os.dup(devnull))
    try:
        ready = worker.start()
    except BaseException as error:  # report why the task cannot load, then stop
        ready = {"type": "error", "message": zygote._tail(repr(error))}
    if ready.get("type") != "ready":
        reply = ready
    else:
        reply = worker.run_job(job)
        reply["timings"] = {**dict(reply.get("timings") or {}), "startup": ready.get("startup_s", 0.0)}
    zygote.write_frame(reply_fd, json.dumps(reply, default=zygote._jsonable).encode())
    return 0


if __name__ == "__main__":
    sys.exit(container_main(sys.argv[1]))
