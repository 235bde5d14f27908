"""`RayRunner`: the worker pool as Ray actors, on this machine or on a cluster.

Each actor owns one sandbox for the run's task (the task context, payload included, is put into Ray's
object store once and shared by all actors). The runner keeps `1 + queued_per_worker` calls queued on each
actor so an actor starts its next candidate as soon as one finishes. When more jobs wait than the actors have
free calls (short candidates, many in flight), one call carries several jobs (`max_jobs_per_call`), each still
run in its own sandboxed process: this saves Ray's round trip per job. Ray types stay in this module: callers
see `Job` and `RunResult` only.

Failures:
- A candidate's own failure (timeout, crash, bad output) is a `RunResult` from the sandbox; the actor lives on.
- An actor or its node that dies is replaced. The candidates of the call it was running are retried once on
  another actor; a second loss returns `Outcome.WORKER_LOST`. Candidates only queued behind it are resent as
  they are.
- An actor that does not answer within `2 * timeout_s` per job of its call plus `watchdog_grace_s` (default
  60 s) is killed and replaced, and the candidates of that call get `Outcome.TIMEOUT` (the sandbox's own timeout
  should have fired long before).

Scheduling overhead, measured with `python -m sandbox.ray_pool --jobs 300` (trivial jobs submitted all at once,
after a warm-up, so that they wait in numbers and share calls; Ray 2.60, an idle 2-core machine):

    sandbox          runner        workers   jobs/s    ms/job
    null             LocalRunner   1, 2      60-86k    0.01-0.02   (a thread hand-off)
    null             RayRunner     1, 2      7000-7600 0.13-0.14   (one round trip carries up to 8 jobs)
    ProcessSandbox   LocalRunner   1         325       3.1
    ProcessSandbox   LocalRunner   2         652       1.5
    ProcessSandbox   RayRunner     1         319       3.1
    ProcessSandbox   RayRunner     2         573       1.7

(The task allows only `math`, so its worker does not preload JAX.) One job per call costs Ray about 1 ms; the
sandbox's own per-candidate cost (static check, fork, rlimits, building the module, the verdict) is ~3 ms of
CPU for a candidate that does nothing, and real candidates fit for seconds.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
import ray.exceptions

from sandbox.errors import SandboxError
from sandbox.pool import Sandbox, SandboxFactory, SandboxSpec, worker_env
from sandbox.results import Job, Outcome, RunResult, TaskContext

MAX_ATTEMPTS = 2  # a candidate whose worker died is run once more, then marked WORKER_LOST


class _SandboxActor:
    """A Ray actor owning one sandbox; its methods run one at a time, in call order."""

    def __init__(self, context: TaskContext, sandbox_factory: SandboxFactory, num_gpus: float) -> None:
        runtime = ray.get_runtime_context()
        gpu_ids = runtime.get_accelerator_ids().get("GPU", []) if num_gpus > 0 else None
        self._node_id = runtime.get_node_id()
        self._sandbox: Sandbox = sandbox_factory(context, worker_env(num_gpus, gpu_ids))

    def run(self, job: Job) -> tuple[RunResult, str]:
        return self._sandbox.run(job), self._node_id

    def run_batch(self, jobs: tuple[Job, ...]) -> tuple[list[RunResult], str]:
        """Runs the jobs one after another (each in its own sandboxed process); one actor call for all."""
        return [self._sandbox.run(job) for job in jobs], self._node_id

    def pid(self) -> int:
        import os

        return os.getpid()

    def close(self) -> None:
        self._sandbox.close()


@dataclass(slots=True)
class _Worker:
    """The driver's view of one actor: its calls in flight, oldest (the running one) first."""

    actor: Any  # ray.actor.ActorHandle
    started: Any  # ObjectRef of the actor's first call, ready once its process runs
    started_at: float | None = None  # when `started` was seen ready: the watchdog ignores actor start-up
    calls: deque[tuple[Any, tuple[Job, ...]]] = field(default_factory=deque)  # (ObjectRef, the call's jobs)
    head_started_at: float = 0.0

    def silent_since(self) -> float | None:
        """Returns since when the running call has been waited for, or None when nothing runs yet."""
        if not self.calls or self.started_at is None:
            return None
        return max(self.head_started_at, self.started_at)


class RayRunner:
    """Runs jobs on `num_workers` Ray actors, each owning one sandbox.

    Args:
        context: the task every job belongs to.
        num_workers: actors, i.e. candidates running at once.
        ray_address: None starts a private local Ray instance (one CPU per worker, no dashboard) and shuts
            it down on `close`; otherwise "auto", "ray://host:10001" or "host:6379" joins that cluster.
            If Ray is already initialised in this process, that session is used as it is.
        num_gpus_per_worker: GPUs reserved per actor (0.25: four actors share a device). Each sandbox sees
            only the devices Ray assigned to its actor; 0 pins JAX to the CPU.
        sandbox_factory: opens each actor's sandbox; must be picklable. Default: `ProcessSandbox`.
        queued_per_worker: calls waiting on each actor besides the running one.
        max_jobs_per_call: when more jobs wait than the actors have free calls, up to this many go to an actor
            in one call (run one after another, each isolated as usual). It saves Ray's ~1 ms round trip per
            job when jobs are short and many; with few jobs waiting every call carries one.
        num_cpus_per_worker: CPUs Ray reserves for each actor.
        watchdog_grace_s: an actor silent for `2 * timeout_s` per job plus `watchdog_grace_s` seconds on one
            call (counted from when its process was up) is killed and replaced.
    """

    def __init__(
        self,
        context: TaskContext,
        num_workers: int,
        ray_address: str | None = None,
        num_gpus_per_worker: float = 0.0,
        *,
        sandbox_factory: SandboxFactory | None = None,
        queued_per_worker: int = 1,
        num_cpus_per_worker: float = 1.0,
        watchdog_grace_s: float = 60.0,
        max_jobs_per_call: int = 8,
    ) -> None:
        if num_workers < 1:
            raise SandboxError(f"num_workers must be at least 1, found {num_workers}")
        self._num_workers = num_workers
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            _init_ray(ray_address, num_cpus=max(1, round(num_workers * num_cpus_per_worker)))
        self._closed = False
        if max_jobs_per_call < 1:
            raise SandboxError(f"max_jobs_per_call must be at least 1, found {max_jobs_per_call}")
        self._timeout_s = context.limits.timeout_s
        self._watchdog_grace_s = watchdog_grace_s
        self._max_calls = 1 + queued_per_worker
        self._max_jobs_per_call = max_jobs_per_call
        self._actor_class = ray.remote(_SandboxActor).options(
            num_cpus=num_cpus_per_worker,
            num_gpus=num_gpus_per_worker,
            max_restarts=0,
            max_task_retries=0,
        )
        self._actor_args = (ray.put(context), sandbox_factory or SandboxSpec(), num_gpus_per_worker)
        self._workers = [self._start_actor() for _ in range(num_workers)]
        self._owner: dict[Any, _Worker] = {}  # ObjectRef -> the worker running it
        self._waiting: deque[Job] = deque()
        self._finished: list[RunResult] = []  # decided here (WORKER_LOST, TIMEOUT), not yet returned
        self._attempts: dict[int, int] = {}
        self._job_ids: set[int] = set()
        self._node_by_job: dict[int, str] = {}
        self.replacements = 0
        """How many actors were replaced after dying or hanging."""
        self.calls_made = 0
        """How many Ray calls carried jobs (fewer than the jobs when calls carried several)."""

    @property
    def num_workers(self) -> int:
        return self._num_workers

    @property
    def node_by_job(self) -> Mapping[int, str]:
        """The Ray node id (hex) that produced each returned result, by job_id."""
        return dict(self._node_by_job)

    def submit(self, job: Job) -> None:
        """Queues a job; it is sent to an actor as soon as one has room."""
        self._check_open()
        if job.job_id in self._job_ids:
            raise SandboxError(f"job_id {job.job_id} is already in flight; give every job a unique job_id")
        self._job_ids.add(job.job_id)
        self._waiting.append(job)
        self._dispatch()

    def results(self, timeout_s: float) -> list[RunResult]:
        """Returns the results finished so far, waiting up to `timeout_s` seconds for the first one."""
        self._check_open()
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            self._collect(wait_s=0.0 if self._finished else self._wait_budget(deadline))
            self._kill_hung_actors()
            self._dispatch()
            if self._finished or not self._owner or time.monotonic() >= deadline:
                break
        finished, self._finished = self._finished, []
        for result in finished:
            self._job_ids.discard(result.job_id)
            self._attempts.pop(result.job_id, None)
        return finished

    def in_flight(self) -> int:
        return len(self._job_ids)

    def actor_pids(self) -> list[int]:
        """Returns the process id of each actor (for diagnostics and tests); blocks until all started."""
        self._check_open()
        return ray.get([worker.actor.pid.remote() for worker in self._workers])

    def close(self) -> None:
        """Closes idle actors' sandboxes, kills all actors, and stops Ray if this runner started it."""
        if self._closed:
            return
        self._closed = True
        idle = [worker.actor.close.remote() for worker in self._workers if not worker.calls]
        if idle:
            ray.wait(idle, num_returns=len(idle), timeout=10.0)
        for worker in self._workers:
            ray.kill(worker.actor, no_restart=True)
        self._workers, self._owner = [], {}
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> RayRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- inside the driver ---------------------------------------------------------------------------

    def _start_actor(self) -> _Worker:
        actor = self._actor_class.remote(*self._actor_args)
        return _Worker(actor=actor, started=actor.pid.remote())

    def _dispatch(self) -> None:
        """Sends waiting jobs to the actors with the fewest calls, up to `_max_calls` calls each.

        A call carries one job unless more jobs wait than the actors have free calls; then the waiting jobs are
        spread over the free calls, at most `_max_jobs_per_call` per call.
        """
        while self._waiting:
            worker = min(self._workers, key=lambda w: len(w.calls))
            if len(worker.calls) >= self._max_calls:
                return
            free_calls = sum(self._max_calls - len(w.calls) for w in self._workers)
            count = min(self._max_jobs_per_call, -(-len(self._waiting) // free_calls))
            jobs = tuple(self._waiting.popleft() for _ in range(count))
            ref = worker.actor.run.remote(jobs[0]) if count == 1 else worker.actor.run_batch.remote(jobs)
            self.calls_made += 1
            if not worker.calls:
                worker.head_started_at = time.monotonic()
            worker.calls.append((ref, jobs))
            self._owner[ref] = worker

    def _watchdog_limit(self, worker: _Worker) -> float:
        """Seconds the actor's running call may take: 2 * timeout_s per job of the call, plus the grace."""
        jobs = len(worker.calls[0][1]) if worker.calls else 1
        return 2 * self._timeout_s * jobs + self._watchdog_grace_s

    def _wait_budget(self, deadline: float) -> float:
        now = time.monotonic()
        watchdogs = [since + self._watchdog_limit(w) for w in self._workers if (since := w.silent_since()) is not None]
        return max(0.0, min([deadline, *watchdogs]) - now)

    def _collect(self, wait_s: float) -> None:
        """Moves finished calls into `_finished`, replacing actors that died."""
        if not self._owner:
            return
        refs = list(self._owner)
        ready, _ = ray.wait(refs, num_returns=1, timeout=wait_s)
        if not ready:
            return
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            worker = self._owner.pop(ref, None)
            if worker is None:  # its actor died and was replaced while handling an earlier ref
                continue
            try:
                returned, node_id = ray.get(ref)
            except ray.exceptions.RayActorError as error:
                if error.actor_init_failed:
                    raise SandboxError(
                        f"a sandbox worker could not start: {_last_line(error)}. The full traceback is above; "
                        "fix the task context or the sandbox settings and start again."
                    ) from error
                self._replace(worker, reason=str(error).splitlines()[0], outcome=Outcome.WORKER_LOST)
                continue
            except ray.exceptions.RayTaskError as error:
                raise SandboxError(
                    f"a sandbox raised instead of returning a RunResult: {_last_line(error)}"
                ) from error
            except ray.exceptions.RayError as error:  # its node, worker process or result object was lost
                self._replace(worker, reason=_last_line(error), outcome=Outcome.WORKER_LOST)
                continue
            self._remove_call(worker, ref)
            for result in returned if isinstance(returned, list) else [returned]:
                self._node_by_job[result.job_id] = node_id
                self._finished.append(result)

    def _remove_call(self, worker: _Worker, ref: Any) -> None:
        worker.calls = deque((r, jobs) for r, jobs in worker.calls if r != ref)
        worker.head_started_at = time.monotonic()

    def _kill_hung_actors(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            if worker.started_at is None and ray.wait([worker.started], timeout=0)[0]:
                worker.started_at = now
        for worker in list(self._workers):
            since = worker.silent_since()
            limit = self._watchdog_limit(worker)
            if since is not None and now - since > limit:
                reason = f"the worker did not answer within {limit:.0f} s; it was killed and replaced"
                self._replace(worker, reason=reason, outcome=Outcome.TIMEOUT)

    def _replace(self, worker: _Worker, *, reason: str, outcome: Outcome) -> None:
        """Starts a new actor in place of `worker`; retries or fails the jobs of the call it was running."""
        self.replacements += 1
        ray.kill(worker.actor, no_restart=True)  # it may only be unreachable, and must not come back
        index = self._workers.index(worker)
        self._workers[index] = self._start_actor()
        calls = list(worker.calls)
        for ref, _ in calls:
            self._owner.pop(ref, None)
        if not calls:
            return
        (_, running), queued = calls[0], [job for _, jobs in calls[1:] for job in jobs]
        # Jobs only queued behind the lost call never started: resend them first, as they are.
        self._waiting.extendleft(reversed(queued))
        # Any job of the running call may have been the one running when the actor was lost.
        retry = []
        for job in running:
            attempts = self._attempts.get(job.job_id, 0) + 1
            self._attempts[job.job_id] = attempts
            if outcome is Outcome.WORKER_LOST and attempts < MAX_ATTEMPTS:
                retry.append(job)
            else:
                self._finished.append(RunResult(job.job_id, outcome, error=reason))
        self._waiting.extendleft(reversed(retry))

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError("this runner is closed; make a new one")


def _last_line(error: BaseException) -> str:
    """Returns the last line of an error's message: for a Ray error, the remote exception itself."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _init_ray(ray_address: str | None, *, num_cpus: int) -> None:
    """Starts a private local Ray instance, or connects to the cluster at `ray_address`.

    Raises:
        SandboxError: one sentence saying what failed and what to try, for every way `ray.init` fails.
    """
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if ray_address is None:
            # "local" rather than None: never join a cluster that someone started on this machine.
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
        else:
            ray.init(address=ray_address, **quiet)
    except Exception as error:  # noqa: BLE001 -- ray.init fails in ways that change between releases; a startup
        # timeout, for one, is a bare Exception ("The current node timed out during startup").
        reason = _first_sentence(error)
        if ray_address is None:
            raise SandboxError(
                f"could not start a local Ray instance ({reason}); run the command again, "
                "or evaluate candidates without Ray with --runner local (sandbox.runner: local)."
            ) from error
        raise SandboxError(
            f"could not reach the Ray cluster at {ray_address!r} ({reason}); check that it "
            "runs and that --ray-address (sandbox.ray_address) is 'auto', 'ray://host:10001' or 'host:6379' (a "
            "cluster with token authentication also needs RAY_AUTH_MODE=token and its token in ~/.ray/auth_token "
            "or RAY_AUTH_TOKEN here, and 'ray://' addresses need the ray[client] package)."
        ) from error


def _first_sentence(error: Exception, max_chars: int = 300) -> str:
    """Returns an error message's first sentence on one line, headed by its class unless it is a bare Exception."""
    text = " ".join(str(error).split())
    text = text.split(". ", 1)[0].rstrip(".") or "no message"
    text = text if len(text) <= max_chars else text[:max_chars] + "..."
    return text if type(error) is Exception else f"{type(error).__name__}: {text}"


# ------------------------------------------------------------------------------------------------ measurement
class _NullSandbox:
    """Returns at once without running anything: isolates the pool's own per-job cost."""

    def __init__(self, context: TaskContext, extra_env: Mapping[str, str]) -> None:
        pass

    def run(self, job: Job) -> RunResult:
        return RunResult(job.job_id, Outcome.OK, scores={"score": 0.0})

    def close(self) -> None:
        pass


def _benchmark(num_jobs: int) -> None:
    """Prints jobs/s and ms/job for trivial jobs through LocalRunner and RayRunner, 1 and 2 workers."""
    import tempfile
    from pathlib import Path

    from sandbox.pool import LocalRunner

    root = tempfile.mkdtemp(prefix="discover-bench-")
    Path(root, "score.py").write_text("def score(candidate):\n    return {'score': float(candidate.f(1.0))}\n")
    context = TaskContext(entry="score.py:score", payload={}, function_name="f", allowed_imports=("math",), root=root)
    source = "def f(x):\n    return x\n"
    _init_ray(None, num_cpus=2)
    print(f"{'sandbox':<16}{'runner':<13}{'workers':>8}{'jobs/s':>10}{'ms/job':>9}")
    for name, factory in (("null", _NullSandbox), ("ProcessSandbox", SandboxSpec())):
        for runner_class in (LocalRunner, RayRunner):
            for num_workers in (1, 2):
                runner = runner_class(context, num_workers, sandbox_factory=factory)
                try:
                    for phase, count in (("warm-up", 4 * num_workers), ("measure", num_jobs)):
                        started = time.perf_counter()
                        for job_id in range(count):
                            runner.submit(Job(job_id, source))
                        done = 0
                        while done < count:
                            results = runner.results(timeout_s=60.0)
                            if any(r.outcome is not Outcome.OK for r in results):
                                raise SandboxError(f"benchmark job failed: {results}")
                            done += len(results)
                        elapsed = time.perf_counter() - started
                    print(f"{name:<16}{runner_class.__name__:<13}{num_workers:>8}{count / elapsed:>10.1f}"
                          f"{1000 * elapsed / count:>9.2f}", flush=True)
                finally:
                    runner.close()
    ray.shutdown()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Measure the pool's per-job overhead with trivial jobs.")
    parser.add_argument("--jobs", type=int, default=200, help="jobs per measurement (after a warm-up)")
    _benchmark(parser.parse_args().jobs)
