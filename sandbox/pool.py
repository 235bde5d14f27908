"""The worker pool seam: `Runner` (submit jobs, collect results) and its in-process twin `LocalRunner`.

A runner owns `num_workers` sandboxes for one task. Each sandbox runs one candidate at a time, so at most
`num_workers` candidates run at once; jobs submitted beyond that wait in the runner's queue. Results come
back in completion order, matched to their job by `RunResult.job_id`.

Two runners share this interface:

- `LocalRunner`: threads in this process, each owning one sandbox. No Ray; used by tests and for debugging.
- `RayRunner` (`sandbox/ray_pool.py`): one Ray actor per worker, locally or on a cluster.

`sandbox.runners.make_runner(config, context)` builds the one a `SandboxConfig` asks for.
"""

from __future__ import annotations

import os

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from sandbox import isolation
from sandbox.config import DEFAULT_DOCKER_IMAGE, SandboxConfig
from sandbox.errors import SandboxError
from sandbox.results import Job, RunResult, TaskContext

class Sandbox(Protocol):
    """One isolated worker for one task: runs one candidate at a time.

    `ProcessSandbox` (a warm subprocess) and `DockerSandbox` (a container per candidate) implement it.
    `run` never raises for a candidate's failure; it returns a `RunResult` with the matching `Outcome`.

    Minimal implementation::

        class EchoSandbox:
            def __init__(self, context: TaskContext, extra_env: Mapping[str, str]) -> None: ...
            def run(self, job: Job) -> RunResult:
                return RunResult(job.job_id, Outcome.OK, scores={"score": float(len(job.source))})
            def close(self) -> None: ...
    """

    def run(self, job: Job) -> RunResult: ...

    def close(self) -> None: ...


SandboxFactory = Callable[[TaskContext, Mapping[str, str]], Sandbox]
"""Opens a sandbox for a task; the mapping holds environment variables for the candidate's process."""


class Runner(Protocol):
    """Evaluates jobs on a pool of sandboxes; results come back as they finish.

    Minimal implementation (one worker, no concurrency)::

        class SerialRunner:
            num_workers = 1
            def __init__(self, sandbox: Sandbox) -> None:
                self._sandbox, self._waiting = sandbox, []
            def submit(self, job: Job) -> None:
                self._waiting.append(job)
            def results(self, timeout_s: float) -> list[RunResult]:
                done = [self._sandbox.run(job) for job in self._waiting]
                self._waiting = []
                return done
            def in_flight(self) -> int:
                return len(self._waiting)
            def close(self) -> None:
                self._sandbox.close()
    """

    @property
    def num_workers(self) -> int: ...

    def submit(self, job: Job) -> None:
        """Queues a job; returns at once."""

    def results(self, timeout_s: float) -> list[RunResult]:
        """Returns the results finished so far, waiting up to `timeout_s` seconds for at least one.

        Returns an empty list when nothing finished within `timeout_s` or nothing is in flight.
        """

    def in_flight(self) -> int:
        """Returns how many submitted jobs have not been returned by `results` yet."""

    def close(self) -> None:
        """Stops the workers; jobs still in flight are abandoned."""


def evaluate_many(runner: Runner, jobs: Sequence[Job], poll_s: float = 1.0) -> list[RunResult]:
    """Submits the jobs (distinct job ids) and waits for all of them; returns one result per job, in their order.

    Results of other jobs the runner returns meanwhile are dropped: use it on a runner nothing else submits to.
    """
    waiting: dict[int, int] = {}
    for position, job in enumerate(jobs):
        if job.job_id in waiting:
            raise ValueError(f"job id {job.job_id} is given twice; each job needs its own id.")
        runner.submit(job)
        waiting[job.job_id] = position
    results: list[RunResult | None] = [None] * len(jobs)
    while waiting:
        for result in runner.results(poll_s):
            if result.job_id in waiting:
                results[waiting.pop(result.job_id)] = result
    return results  # type: ignore[return-value]


def worker_env(num_gpus: float, gpu_ids: list[str] | None = None) -> dict[str, str]:
    """Returns the environment variables that pin a worker's JAX to its CPU or GPU share.

    A JAX_PLATFORMS that names cuda also puts a `ProcessSandbox` in GPU mode (NVIDIA device nodes bound in,
    host memory bounded by RLIMIT_DATA; see `sandbox/process.py`).

    Args:
        num_gpus: GPUs reserved for this worker; 0 makes JAX use the CPU, fractions share a device.
        gpu_ids: the device ids assigned to this worker (Ray's CUDA_VISIBLE_DEVICES); None leaves
            device visibility as it is.
    """
    if num_gpus <= 0:
        return {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    env = {"JAX_PLATFORMS": "cuda,cpu"}  # the sandbox's default is "cpu"; CUDA first makes it JAX's default
    if gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    if num_gpus < 1:
        # JAX preallocates 75% of a device by default; workers sharing one would run out of memory.
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 * num_gpus:.3f}"
    return env


def compile_cache_folder(setting: str, *, isolated: bool) -> str | None:
    """Returns the folder of the scoring workers' persistent compilation cache, created, or None for none.

    `setting` is SandboxConfig.compile_cache: "" for the default (`$XDG_CACHE_HOME/discover/xla`, else
    ~/.cache/discover/xla), "off", or a folder. The cache holds compiled programs that the trusted scorer loads and
    runs, so it is used only when the tracing stage is isolated (bubblewrap or a container), where candidate Python
    cannot reach it: a plain-process tracing stage could write a program there that a later scorer would run.
    """
    if setting == "off" or not isolated:
        return None
    if setting:
        folder = Path(setting).expanduser()
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "discover" / "xla"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            share_between_uids(folder)
    except OSError:
        return None
    return str(folder.resolve())


def share_between_uids(folder: Path) -> None:
    """Lets scoring workers that run as different unprivileged uids (one per worker, when we are root) share the
    cache in `folder`: each reads, refreshes and evicts entries that others wrote, under JAX's lock file.

    The folder belongs to root and the group `isolation.CACHE_GID`, with mode 2770: the scoring workers' processes
    carry that group and write with umask 007 (sandbox/zygote.py), and no one else on the machine can read the
    folder or plant a program in it for a scorer to run. Tracing workers, which run candidate Python, never get
    the group. The lock file is made here, because one a worker made would be writable only by that worker's uid
    and then no other worker could take the lock, so that none would read or write the cache. Entries left
    unshared (by an older version) are handed to the group.
    """
    os.chown(folder, 0, isolation.CACHE_GID)
    folder.chmod(0o2770)
    lock = folder / ".lockfile"
    lock.touch(exist_ok=True)
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            if info.st_gid != isolation.CACHE_GID:
                os.chown(path, -1, isolation.CACHE_GID)
            if info.st_mode & 0o7777 != 0o660:
                path.chmod(0o660)


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """A picklable recipe for opening a sandbox in a worker (a thread, a Ray actor on another machine).

    Call it like a `SandboxFactory`: `SandboxSpec(backend="process")(context, extra_env)`.
    """

    backend: Literal["process", "docker"] = "process"
    use_bwrap: bool | None = None
    hidden_paths: tuple[str, ...] = ()
    docker_image: str = DEFAULT_DOCKER_IMAGE
    docker_startup_grace_s: float = 20.0
    compile_cache: str = ""

    @classmethod
    def from_config(cls, config: SandboxConfig, hidden_paths: Sequence[str] = ()) -> SandboxSpec:
        """Returns the recipe for the sandbox a `SandboxConfig` asks for.

        Args:
            hidden_paths: process backend: files or folders candidates must not see (e.g. the run's database).
        """
        return cls(
            backend=config.backend,
            use_bwrap=config.use_bwrap,
            hidden_paths=tuple(str(path) for path in hidden_paths),
            docker_image=config.docker_image,
            docker_startup_grace_s=config.docker_startup_grace_s,
            compile_cache=config.compile_cache,
        )

    def __call__(self, context: TaskContext, extra_env: Mapping[str, str]) -> Sandbox:
        """Opens one worker's sandbox: a `StagedSandbox` when the context declares `inputs` (every task does),
        whose tracing stage runs in a `ProcessSandbox` (or a container) and whose scoring stage, the trusted
        worker, in a `ProcessSandbox` on this machine."""
        if self.backend not in ("process", "docker"):
            raise SandboxError(f"sandbox backend must be 'process' or 'docker', found {self.backend!r}")
        from sandbox.process import ProcessSandbox

        if context.inputs is None:
            if self.backend == "docker":
                return self._docker(context, extra_env, "run")
            return ProcessSandbox(context, use_bwrap=self.use_bwrap, hidden_paths=self.hidden_paths,
                                  extra_env=extra_env)
        from sandbox.staged import StagedSandbox

        cuda = isolation.wants_cuda(isolation.sandbox_env(extra_env)["JAX_PLATFORMS"])
        # The tracing stage needs no GPU: it lowers for the scorer's platform without running anything.
        trace_env = {**extra_env, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}

        cache = compile_cache_folder(self.compile_cache, isolated=self.backend == "docker" or (
            self.use_bwrap is not False and isolation.find_bwrap() is not None))

        def open_stage(stage_context: TaskContext, stage: str) -> Sandbox:
            if stage == "score":
                return ProcessSandbox(stage_context, use_bwrap=self.use_bwrap, hidden_paths=self.hidden_paths,
                                      extra_env=extra_env, stage="score", compile_cache=cache)
            if self.backend == "docker":
                return self._docker(stage_context, trace_env, "trace")
            hidden = (*self.hidden_paths, str(Path(context.root).resolve()), *([cache] if cache else []))
            return ProcessSandbox(stage_context, use_bwrap=self.use_bwrap, extra_env=trace_env, stage="trace",
                                  hidden_paths=hidden)

        return StagedSandbox(context, open_stage, platforms=("cuda",) if cuda else ("cpu",))

    def _docker(self, context: TaskContext, extra_env: Mapping[str, str], stage: str) -> Sandbox:
        from sandbox.docker_backend import DockerSandbox

        return DockerSandbox(context, image=self.docker_image, extra_env=extra_env,
                             startup_grace_s=self.docker_startup_grace_s, stage=stage)


#: How often LocalRunner.results looks, while it waits, whether a worker has failed (seconds).
FAILURE_POLL_S = 0.25


class LocalRunner:
    """Runs jobs on `num_workers` threads in this process, each owning one sandbox (real isolation, no Ray).

    Args:
        context: the task every job belongs to.
        num_workers: sandboxes running at once.
        sandbox_factory: opens each worker's sandbox; default: a `ProcessSandbox`.
        num_gpus_per_worker: 0 pins JAX to the CPU; above 0 limits each worker's share of GPU memory
            (all workers see all devices).
    """

    def __init__(
        self,
        context: TaskContext,
        num_workers: int,
        *,
        sandbox_factory: SandboxFactory | None = None,
        num_gpus_per_worker: float = 0.0,
    ) -> None:
        if num_workers < 1:
            raise SandboxError(f"num_workers must be at least 1, found {num_workers}")
        self._num_workers = num_workers
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._done: queue.Queue[RunResult] = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()
        self._failure: BaseException | None = None
        self._closed = False
        factory = sandbox_factory if sandbox_factory is not None else SandboxSpec()
        env = worker_env(num_gpus_per_worker)
        self._sandboxes: list[Sandbox] = []
        self._threads = [
            threading.Thread(
                target=self._work, args=(context, factory, env), name=f"sandbox-worker-{i}", daemon=True
            )
            for i in range(num_workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def num_workers(self) -> int:
        return self._num_workers

    def submit(self, job: Job) -> None:
        """Queues a job for the next free worker; returns at once."""
        self._raise_if_broken()
        with self._lock:
            if job.job_id in self._in_flight:
                raise SandboxError(
                    f"job_id {job.job_id} is already in flight; give every job a unique job_id"
                )
            self._in_flight.add(job.job_id)
        self._jobs.put(job)

    def results(self, timeout_s: float) -> list[RunResult]:
        """Returns the results finished so far, waiting up to `timeout_s` seconds for the first one.

        Raises:
            SandboxError as soon as a worker has failed (its sandbox could not open, or raised), also while
            waiting.
        """
        self._raise_if_broken()
        finished: list[RunResult] = []
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while self.in_flight() > 0 and self._failure is None:
            try:  # in slices, so that a worker's failure ends the wait instead of the timeout
                finished.append(self._done.get(timeout=max(min(deadline - time.monotonic(), FAILURE_POLL_S), 0.0)))
                break
            except queue.Empty:
                if time.monotonic() >= deadline:
                    break
        while True:
            try:
                finished.append(self._done.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            for result in finished:
                self._in_flight.discard(result.job_id)
        self._raise_if_broken()
        return finished

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def close(self) -> None:
        """Stops the workers after their current job and closes their sandboxes."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _work(self, context: TaskContext, factory: SandboxFactory, env: Mapping[str, str]) -> None:
        try:
            sandbox = factory(context, env)
        except Exception as error:  # reported to the caller by the next submit/results
            self._failure = error
            return
        try:
            while (job := self._jobs.get()) is not None:
                self._done.put(sandbox.run(job))
        except Exception as error:  # a sandbox bug: run() must not raise for candidate failures
            self._failure = error
        finally:
            sandbox.close()

    def _raise_if_broken(self) -> None:
        if self._closed:
            raise SandboxError("this runner is closed; make a new one")
        if self._failure is not None:
            raise SandboxError(f"a sandbox worker failed: {self._failure!r}") from self._failure
