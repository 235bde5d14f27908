"""`ProcessSandbox`: runs candidates one at a time in an isolated, warm worker process.

Design: each sandbox owns one worker ("zygote", `sandbox/zygote.py`) started once under bubblewrap
(`sandbox/isolation.py`). The worker imports the modules the task allows candidates to import (`preload_for`:
numpy/jax/optax for the bundled tasks) and the task's entry module, receives the task payload once, freezes its
heap out of the garbage collector's reach (`gc.freeze`, so that a collection in a child does not copy every
page), and then forks one child per candidate; the child applies the rlimits, drops to an unprivileged
uid, runs the candidate and dies. Why this design, with its measurements, and what GPU mode changes: `docs/design.md`.

The worker is replaced (killed with its whole bwrap tree, started again on the next job) after a timeout, after
the worker itself died, after a candidate left background processes behind, and after `max_jobs_per_worker` jobs.
The child gets a fresh copy-on-write address space, so a candidate that monkeypatches numpy or jax affects
nobody else; forking is safe because the worker checks it is single-threaded with no JAX backend initialised.
`memory_mb` is what a candidate may allocate on top of that start (see `zygote.plan_limits`).

GPU mode (`gpu=True`; by default on when the worker's JAX_PLATFORMS names cuda) binds the NVIDIA device nodes
into the sandbox, bounds host memory by RLIMIT_DATA instead of RLIMIT_AS (CUDA reserves address ranges far larger
than any limit) and GPU memory by XLA_PYTHON_CLIENT_MEM_FRACTION, and allows more threads; `docs/design.md`
says what each of these does and does not bound.

Where bubblewrap is missing (macOS, minimal containers), the worker is a plain subprocess with the same rlimits,
the same clean environment and the same uid drop when run as root, but it sees the filesystem and the network;
this is logged once as a warning. It still dies with the engine, even one killed with SIGKILL: a parent-death
signal and the closed command pipe make it kill the running candidate and remove its scratch folder
(`zygote._die_with_host`), and the candidate's process dies with the worker.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from sandbox import isolation, zygote
from sandbox.errors import SandboxError
from sandbox.results import Job, Outcome, RunResult, TaskContext
from sandbox.static_check import Rejection, check_source

logger = logging.getLogger(__name__)

#: Modules the worker imports before forking, when installed and the task allows candidates to import them.
DEFAULT_PRELOAD = ("numpy", "jax", "jax.numpy", "optax")


def preload_for(allowed_imports: Sequence[str]) -> tuple[str, ...]:
    """Returns the modules a worker imports before forking for a task allowing `allowed_imports`.

    Each candidate then finds them imported, and pays nothing for them. A task that allows fewer heavy modules
    gets a lighter worker, whose fork and exit per candidate cost less (about 0.3 ms against 5 ms of CPU with
    JAX loaded). The entry's own imports are loaded anyway, with the entry, before forking.

    Example:
        >>> preload_for(("math", "jax"))
        ('math', 'jax', 'jax.numpy')
        >>> preload_for(("*",))
        ('numpy', 'jax', 'jax.numpy', 'optax')
    """
    if "*" in allowed_imports:
        return DEFAULT_PRELOAD
    names: list[str] = []
    for name in allowed_imports:
        names.append(name)
        if name == "jax":
            names.append("jax.numpy")
    return tuple(dict.fromkeys(names))

_warned_no_bwrap = False
_warn_lock = threading.Lock()


class ProcessSandbox:
    """Runs candidate sources for one task, one job at a time, in an isolated warm worker process.

    Example:
        >>> sandbox = ProcessSandbox(TaskContext(entry="score.py:score", payload={}, function_name="agent"))
        >>> result = sandbox.run(Job(job_id=1, source=source))   # never raises for candidate failures
        >>> sandbox.close()                                       # kills everything it started

    Args:
        context: the task's entry, payload, evolved function name, allowed imports and limits.
        use_bwrap: True requires bubblewrap, False never uses it, None (default) uses it when installed.
        hidden_paths: files or directories the worker must not see (e.g. the SQLite database and its folder),
            in addition to the user's home, /root and /home.
        max_jobs_per_worker: the worker is replaced after this many jobs (1 = a fresh process per candidate).
        preload: modules imported once by the worker before forking; default: `preload_for` the context's
            allowed imports.
        startup_timeout_s: seconds a worker may take to start (import JAX, the entry, unpickle the payload).
        scratch_mb: size of the worker's private writable tmpfs, in MiB.
        extra_env: extra environment variables for the worker (never put secrets here).
        gpu: GPU mode (see this module's docstring). None (default): on when the worker's JAX_PLATFORMS (from
            `extra_env`, else the host's, else "cpu") names cuda. True with JAX_PLATFORMS=cpu applies GPU mode's
            memory limit to a CPU-only worker.
        stage: "run" (default: the entry receives the candidate's module), "trace" (the candidate's Python is
            traced and exported; the worker sees neither the task's folder nor the code beside this package, nor
            the data mirror or cache, nor the working directory) or "score" (the trusted scorer: jobs carry an
            exported computation, no candidate Python runs). See `sandbox/staged.py`.
        compile_cache: "score" stage only: a folder for JAX's persistent compilation cache, shared by the
            run's scoring workers (`compilation_cache_env`); under bubblewrap it is the one writable folder.

    Raises:
        SandboxError: a bad entry or `max_jobs_per_worker`; bubblewrap required but missing; JAX is to use CUDA
            but the NVIDIA device nodes are missing or the candidates' uid cannot open them.
    """

    def __init__(self, context: TaskContext, *, use_bwrap: bool | None = None, hidden_paths: Sequence[str] = (),
                 max_jobs_per_worker: int = 500, preload: Sequence[str] | None = None,
                 startup_timeout_s: float = 120.0, scratch_mb: int = 256,
                 extra_env: Mapping[str, str] | None = None, gpu: bool | None = None,
                 stage: str = "run", compile_cache: str | None = None) -> None:
        if max_jobs_per_worker < 1:
            raise SandboxError(f"max_jobs_per_worker must be at least 1; got {max_jobs_per_worker}.")
        if stage not in ("run", "trace", "score"):
            raise SandboxError(f"stage must be 'run', 'trace' or 'score'; got {stage!r}.")
        if stage == "score" and not context.inputs:
            raise SandboxError("the 'score' stage needs TaskContext.inputs (the evolved function's arguments).")
        self.stage = stage
        self.context = context
        self.root = str(Path(context.root).resolve())
        _check_entry(context.entry, self.root)
        bwrap = isolation.find_bwrap()
        if use_bwrap and bwrap is None:
            raise SandboxError("use_bwrap=True, but bubblewrap ('bwrap') was not found on PATH. Install it "
                               "(apt-get install bubblewrap) or pass use_bwrap=None to fall back to plain processes.")
        self.bwrap = bwrap if use_bwrap is not False else None
        if self.bwrap is None and use_bwrap is None:
            _warn_once_no_bwrap()
        self.hidden_paths = tuple(hidden_paths) + (isolation.trace_hidden_paths() if stage == "trace" else ())
        self.max_jobs_per_worker = max_jobs_per_worker
        self.preload = preload_for(context.allowed_imports) if preload is None else tuple(preload)
        if stage != "run":
            self.preload = tuple(dict.fromkeys((*self.preload, "jax", "jax.numpy", "jax.export")))
        self.startup_timeout_s = startup_timeout_s
        self.scratch_mb = scratch_mb
        self.extra_env = dict(extra_env or {})
        self.compile_cache = None
        if compile_cache and stage == "score":
            self.compile_cache = str(Path(compile_cache).resolve())
            self.extra_env.update(compilation_cache_env(self.compile_cache))
        self.drop_uid = isolation.allocate_uid() if os.geteuid() == 0 else None
        jax_platforms = isolation.sandbox_env(self.extra_env)["JAX_PLATFORMS"]
        self.gpu = isolation.wants_cuda(jax_platforms) if gpu is None else gpu
        if self.gpu and isolation.wants_cuda(jax_platforms):
            problem = isolation.gpu_device_problem(isolation.gpu_device_nodes(), self.drop_uid)
            if problem:
                raise SandboxError(f"{problem} (JAX_PLATFORMS={jax_platforms!r})")
        self._payload = pickle.dumps(dict(context.payload), protocol=pickle.HIGHEST_PROTOCOL)
        self._lock = threading.Lock()
        self._worker: _WorkerProcess | None = None
        self._closed = False
        self._startup_cpu_s = 0.0
        self._prestarted_s = 0.0
        self.workers_started = 0

    @property
    def isolated(self) -> bool:
        """Whether workers run under bubblewrap (False: plain subprocesses with rlimits only)."""
        return self.bwrap is not None

    def run(self, job: Job, exported: str | None = None) -> RunResult:
        """Evaluates one candidate and returns how it ended; never raises for anything the candidate does.

        Args:
            job: the candidate; in the "score" stage its source is not sent to the worker.
            exported: "score" stage: the candidate's exported computation (the "trace" stage's
                details["exported"]).

        Raises:
            SandboxError: the sandbox is closed, or a worker cannot start (a broken entry file or payload).
        """
        started = time.perf_counter()
        if job.rejection:
            rejection = Rejection(Outcome.INVALID_OUTPUT, job.rejection)
        elif self.stage == "score":
            rejection = None if exported else Rejection(Outcome.CRASHED, "no exported computation to score")
        else:
            rejection = check_source(job.source, self.context.allowed_imports)
        if rejection is not None:
            wall_s = time.perf_counter() - started
            return RunResult(job.job_id, rejection.outcome, error=rejection.message, timings={"wall": wall_s},
                             wall_time_s=wall_s)
        message = {"job_id": job.job_id, "parameters": [list(p) for p in job.parameters]}
        if self.stage == "score":
            message.update(exported=exported, constants=[list(c) for c in job.constants])
        else:
            message["source"] = job.source
            if self.stage == "trace" and job.lifted_source:
                message.update(lifted_source=job.lifted_source, constants=[name for name, _ in job.constants])
        with self._lock:
            if self._closed:
                raise SandboxError("this ProcessSandbox is closed; create a new one to run more jobs.")
            reply, startup_s = self._run_with_one_retry(message)
            startup_s, self._prestarted_s = startup_s + self._prestarted_s, 0.0
            startup_cpu_s, self._startup_cpu_s = self._startup_cpu_s, 0.0
        wall_s = time.perf_counter() - started
        return _result_from_reply(job.job_id, reply, startup_s, wall_s, startup_cpu_s=startup_cpu_s, stage=self.stage)

    @property
    def warm(self) -> bool:
        """Whether a worker is running (started and not stopped since)."""
        return self._worker is not None

    def prestart(self) -> None:
        """Starts a worker process now if none runs and returns at once, so that its start-up (importing JAX, the
        entry) overlaps other work: the StagedSandbox calls it for the scoring stage while the tracing stage
        runs. The next job waits for the worker to be ready; a start that fails is reported by that job.

        Call it from the thread that runs the jobs, as `run`: the worker dies with the thread that started it.
        """
        with self._lock:
            if self._closed or self._worker is not None:
                return
            started = time.perf_counter()
            try:
                self._spawn_worker()
            except SandboxError:
                return
            self._prestarted_s += time.perf_counter() - started

    def close(self) -> None:
        """Kills the worker and everything it started, at once, even while a job runs. Safe to call twice.

        A job running in another thread then returns WORKER_LOST.
        """
        self._closed = True
        worker = self._worker
        if worker is not None:
            worker.kill()
        with self._lock:
            self._stop_worker()

    def __enter__(self) -> ProcessSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.kill()

    # -------------------------------------------------------------------------------------------- internals
    def _run_with_one_retry(self, job: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """Runs `job` on a live worker; if the worker itself dies, starts a new one and tries once more."""
        startup_s = 0.0
        for attempt in range(2):
            if self._closed:
                return {"outcome": "WORKER_LOST", "error": "the sandbox was closed while the job ran"}, startup_s
            if self._worker is None:
                startup_s += self._start_worker()
            elif not self._worker.ready:  # started by prestart(), not awaited yet
                begun = time.perf_counter()
                self._await_worker()
                startup_s += time.perf_counter() - begun
            worker = self._worker
            reply = worker.run(job, self.context.limits.timeout_s)
            if self._closed:  # close() killed the candidate: whatever the worker managed to say about it is moot
                self._stop_worker()
                return {"outcome": "WORKER_LOST", "error": "the sandbox was closed while the job ran"}, startup_s
            if reply["outcome"] == "TIMEOUT" and reply.get("killed"):
                self._stop_worker()
                return reply, startup_s
            if reply.get("worker_lost"):
                self._stop_worker()
                if self._closed:
                    return {"outcome": "WORKER_LOST", "error": "the sandbox was closed while the job ran"}, startup_s
                if attempt == 0:
                    continue
                reply = {"outcome": "WORKER_LOST", "error": reply["error"]}
                return reply, startup_s
            if reply.get("anomaly") or worker.jobs_run >= self.max_jobs_per_worker:
                self._stop_worker()
            return reply, startup_s
        raise AssertionError("unreachable")

    def _start_worker(self) -> float:
        """Starts a worker and waits until it is ready; returns the seconds that took."""
        started = time.perf_counter()
        self._spawn_worker()
        self._await_worker()
        return time.perf_counter() - started

    def _spawn_worker(self) -> None:
        """Starts a worker process and sends it the task, without waiting for it to be ready."""
        limits = self.context.limits
        if self.drop_uid is not None and self.workers_started > 0:
            # A fresh uid per worker: processes a killed worker left as zombies (reparented to a pid 1 that may
            # not reap them, as without bubblewrap's pid namespace) still count against their uid's RLIMIT_NPROC.
            self.drop_uid = isolation.allocate_uid()
        scratch = isolation.SANDBOX_SCRATCH if self.bwrap else tempfile.mkdtemp(prefix="discover-sandbox-")
        readable = isolation.gpu_library_dirs() if self.gpu else ()
        # RLIMIT_NPROC counts threads: leave room for XLA's thread pools (about one per core, a few pools), and
        # in GPU mode for XLA's GPU client and CUDA's own threads (a few per device and per core).
        cores = os.cpu_count() or 1
        init = {
            "entry": self.context.entry, "root": self.root, "function_name": self.context.function_name,
            "payload": self._payload, "preload": self.preload, "limits": asdict(limits), "scratch": scratch,
            "drop_uid": self.drop_uid, "isolated": self.bwrap is not None,
            "scratch_keep": isolation.scratch_entries_to_keep(
                self.root, [*readable, *([self.compile_cache] if self.compile_cache else [])]) if self.bwrap else [],
            "nproc_extra": 4 * cores + 8 + (4 * cores + 32 if self.gpu else 0),
            "gpu": self.gpu, "stage": self.stage, "inputs": list(self.context.inputs or ()),
            "cache_gid": isolation.CACHE_GID if self.compile_cache else None,
        }
        python_argv = [sys.executable, "-I", "-B", "-u", str(Path(zygote.__file__).resolve())]
        env = isolation.sandbox_env(self.extra_env, scratch=scratch, gpu=self.gpu)
        if self.bwrap:
            argv = isolation.bwrap_command(self.bwrap, python_argv, env, task_root=self.root,
                                           hidden_paths=self.hidden_paths, scratch_mb=self.scratch_mb,
                                           device_nodes=isolation.gpu_device_nodes() if self.gpu else (),
                                           readable_paths=readable, python_only=self.stage == "trace",
                                           writable_paths=[self.compile_cache] if self.compile_cache else [])
        else:
            argv = python_argv
        self._worker = _WorkerProcess(argv, env, scratch_to_remove=None if self.bwrap else scratch,
                                      drop_uid=self.drop_uid)
        self.workers_started += 1
        try:
            self._worker.begin(init)
        except SandboxError:
            self._stop_worker()
            raise

    def _await_worker(self) -> None:
        """Waits for the spawned worker's ready message (at most `startup_timeout_s`)."""
        try:
            self._worker.finish_start(self.startup_timeout_s)
        except SandboxError:
            self._stop_worker()
            raise
        self._startup_cpu_s += float(self._worker.ready.get("startup_cpu_s", 0.0))

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker = None


class _WorkerProcess:
    """One zygote process (and its bwrap tree), seen from the host."""

    def __init__(self, argv: list[str], env: dict[str, str], scratch_to_remove: str | None,
                 drop_uid: int | None) -> None:
        self.argv = argv
        self.drop_uid = drop_uid
        self.scratch_to_remove = scratch_to_remove
        # The clean environment goes to bwrap itself too: nothing of ours is readable in /proc/1/environ.
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=env, start_new_session=True,
                                        close_fds=True, cwd="/")
        self.stderr_tail = bytearray()
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        self.jobs_run = 0
        self.ready: dict[str, Any] = {}

    def _drain_stderr(self) -> None:
        for chunk in iter(lambda: self.process.stderr.read1(1 << 16), b""):
            self.stderr_tail = (self.stderr_tail + chunk)[-8192:]

    def begin(self, init: dict[str, Any]) -> None:
        """Sends the init message: the worker then imports and loads what it needs on its own."""
        try:
            self._send(init)
        except OSError as error:
            raise SandboxError(f"the sandbox worker did not take its task ({error}); its stderr:\n"
                               f"{self._stderr_text()}") from None

    def finish_start(self, timeout_s: float) -> None:
        """Waits at most `timeout_s` for the ready message; raises SandboxError when the worker cannot start."""
        try:
            reply = self._receive(time.monotonic() + timeout_s)
        except (OSError, TimeoutError) as error:
            raise SandboxError(f"the sandbox worker did not start within {timeout_s:.0f} s ({error}); its stderr:\n"
                               f"{self._stderr_text()}") from None
        if reply is None:
            raise SandboxError(f"the sandbox worker exited during start-up; command: {' '.join(self.argv[:3])} ...; "
                               f"its stderr:\n{self._stderr_text()}")
        if reply.get("type") != "ready":
            raise SandboxError(f"the sandbox worker could not load the task: {reply.get('message', reply)}")
        self.ready = reply

    def run(self, job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Sends one job message and waits at most `timeout_s`; on timeout kills the whole worker tree."""
        self.jobs_run += 1
        try:
            self._send(job)
            reply = self._receive(time.monotonic() + timeout_s)
        except TimeoutError:
            self.kill()
            return {"outcome": "TIMEOUT", "killed": True,
                    "error": f"no result within timeout_s={timeout_s:g}; the worker was killed and replaced"}
        except OSError as error:
            reply, why = None, str(error)
        else:
            why = "it closed its pipe"
        if reply is None or reply.get("type") != "result":
            code = self.process.poll()
            return {"outcome": "WORKER_LOST", "worker_lost": True,
                    "error": f"the sandbox worker died while running the job ({why}; exit status {code}); "
                             f"its stderr:\n{self._stderr_text()}"}
        return reply

    def _send(self, message: dict[str, Any]) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        zygote.write_frame(self.process.stdin.fileno(), data)

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        """Returns the next JSON reply, None at end of file; raises TimeoutError after `deadline`."""
        import json

        fd = self.process.stdout.fileno()
        buffer = bytearray()
        needed = zygote._HEADER.size
        header_done = False
        while len(buffer) < needed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("deadline passed")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, min(1 << 20, needed - len(buffer)))
            if not chunk:
                return None
            buffer += chunk
            if not header_done and len(buffer) == zygote._HEADER.size:
                (size,) = zygote._HEADER.unpack(buffer)
                if size > zygote.MAX_RESULT_BYTES * 2:
                    raise OSError(f"the worker sent a reply of {size} bytes")
                buffer.clear()
                needed, header_done = size, True
        return json.loads(bytes(buffer))

    def _stderr_text(self) -> str:
        return bytes(self.stderr_tail).decode("utf-8", "replace")[-4000:]

    def kill(self) -> None:
        """Kills the worker's process group (bwrap, the worker and every candidate process) and reaps it.

        bwrap's --die-with-parent and the end of the pid namespace kill whatever is inside; as root we also kill
        every process of the candidates' uid directly, and wait until none is left running.
        """
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.drop_uid is not None:
            deadline = time.monotonic() + 5.0
            while kill_processes_of_uid(self.drop_uid) and time.monotonic() < deadline:
                time.sleep(0.01)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logger.error("sandbox worker %d did not die after SIGKILL", self.process.pid)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self.scratch_to_remove:
            import shutil

            shutil.rmtree(self.scratch_to_remove, ignore_errors=True)
            self.scratch_to_remove = None


def kill_processes_of_uid(uid: int) -> int:
    """Sends SIGKILL to every live (non-zombie) process whose real uid is `uid`; returns how many were alive."""
    alive = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
            if int(fields["Uid"].split()[0]) != uid or fields["State"].split()[0] in ("Z", "X"):
                continue
            alive += 1
            os.kill(int(name), signal.SIGKILL)
        except (OSError, KeyError, ValueError):
            pass
    return alive


#: Bounds of JAX's persistent compilation cache: every program is cached (a candidate's compile takes well under
#: the default 1 s threshold), and the folder is kept under a size.
COMPILE_CACHE_MAX_BYTES = 1 << 30


def compilation_cache_env(folder: str) -> dict[str, str]:
    """Returns the environment that points a scoring worker's JAX at a persistent compilation cache in `folder`."""
    return {"JAX_COMPILATION_CACHE_DIR": folder, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
            "JAX_COMPILATION_CACHE_MAX_SIZE": str(COMPILE_CACHE_MAX_BYTES)}


def details_lifted(reply: dict) -> bool:
    """Whether a tracing stage's reply says it exported the lifted version (a claim the scorer's check tests)."""
    details = reply.get("details")
    return isinstance(details, dict) and details.get("lifted") is True


def _result_from_reply(job_id: int, reply: Mapping[str, Any], startup_s: float, wall_s: float, *,
                       startup_cpu_s: float = 0.0, stage: str = "run") -> RunResult:
    """Returns the RunResult for a worker's JSON reply.

    The reply is untrusted (a candidate can write its own verdict to the result pipe), so every field is checked
    and anything malformed is dropped. In the "run" stage a candidate can forge its own score this way; in the
    "trace" stage a reply never carries scores, only the exported computation, which the "score" stage checks.
    """
    def mapping(value: Any) -> dict:
        return value if isinstance(value, dict) else {}

    def numbers(value: Any) -> dict[str, float]:
        return {str(k): float(v) for k, v in mapping(value).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}

    timings = numbers(reply.get("timings"))
    timings["startup"] = startup_s + timings.get("startup", 0.0)
    if startup_cpu_s:
        timings["startup_cpu"] = startup_cpu_s
    timings["wall"] = wall_s
    try:
        outcome = Outcome[str(reply.get("outcome"))]
    except KeyError:
        outcome = Outcome.CRASHED
    details = mapping(reply.get("details"))
    if stage == "trace":
        exported = details.get("exported") if outcome is Outcome.OK else None
        details = {"exported": exported} if isinstance(exported, str) else {}
        if details and details_lifted(reply):
            details["lifted"] = True
        scores: dict[str, float] = {}
        if outcome is Outcome.OK and not details:
            outcome = Outcome.CRASHED
            reply = {**reply, "error": "the tracing sandbox returned no exported computation"}
    else:
        scores = numbers(reply.get("scores")) if outcome is Outcome.OK else {}
        if outcome is Outcome.OK and "score" not in scores:
            outcome = Outcome.INVALID_OUTPUT
            reply = {**reply, "error": "the sandbox worker's result carries no finite 'score'"}
    if reply.get("anomaly"):
        details["sandbox_anomaly"] = str(reply["anomaly"])[:1000]
    error = str(reply.get("error", ""))[:8000]
    if outcome is not Outcome.OK and not error.strip():  # a failure always says something, even a forged one
        error = f"the sandbox worker reported {outcome.name} and gave no reason."
    return RunResult(job_id=job_id, outcome=outcome, scores=scores, details=details, error=error, timings=timings,
                     wall_time_s=wall_s, output=str(reply.get("output", "")))


def _check_entry(entry: str, root: str) -> None:
    path, _, function_name = entry.rpartition(":")
    if not path or not function_name:
        raise SandboxError(f"TaskContext.entry = {entry!r}; expected 'path/to/score.py:function'.")
    full = Path(path) if Path(path).is_absolute() else Path(root) / path
    if not full.is_file():
        raise SandboxError(f"TaskContext.entry = {entry!r}, but {full} does not exist (root = {root}).")


def _warn_once_no_bwrap() -> None:
    global _warned_no_bwrap
    with _warn_lock:
        if not _warned_no_bwrap:
            _warned_no_bwrap = True
            logger.warning("bubblewrap ('bwrap') not found: candidates run as plain subprocesses with rlimits only. "
                           "They can read your files and use the network. Install bubblewrap to isolate them.")
