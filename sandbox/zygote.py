"""The sandbox worker: a warm process that forks one child per candidate.

This file runs as a script (`python -I -B -u zygote.py`) inside the sandbox (see `sandbox/isolation.py`),
never imported by the engine. It uses only the standard library until the task context arrives.

Life of a worker:
1. Read the init message (pickle, from the trusted host): the task entry, its payload, limits, the uid to drop to.
2. Import numpy/jax/optax and the task's entry module once, and unpickle the payload once. Check that this left
   the process single-threaded, that no JAX backend is initialised and that no GPU device is open:
   forking after XLA has started its thread pools can deadlock the child, and a CUDA context does not survive
   a fork. JAX finds its CUDA plugin only when a backend first starts, so in GPU mode each child loads the
   driver and starts CUDA itself.
3. For each job: fork a child. The child starts a new session, redirects stdout/stderr to a pipe, makes its own
   scratch directory, applies rlimits (`plan_limits`), drops to the unprivileged uid, builds the candidate
   module, calls the entry and writes its verdict as JSON to a result pipe. Every candidate gets a fresh
   copy-on-write address space, so whatever it patches dies with it.
4. Collect the child's output (first `max_output_kb`, the rest is read and discarded so the child never blocks and
   nothing reaches the disk) and exit status, classify the end and send it to the host as JSON.
5. When the host dies (its command pipe closes, or the parent-death signal arrives; `_die_with_host`), kill the
   running candidate and everything it started, remove the scratch folder where it is not the sandbox's own
   tmpfs, and exit. The candidate's process dies with the worker too (its own parent-death signal).

Replies to the host are JSON only: the host must never unpickle anything that came out of a sandbox.

Stages (init["stage"]; see `sandbox/staged.py`):
- "run": the child builds the candidate's module from its source and calls `entry(module, **payload)`, which
  returns scores (a generic sandbox for untrusted code);
- "trace": the same, with `sandbox/exported.py`'s `export_candidate` as the entry and no data in the payload;
  the verdict carries the exported computation (base64 text) instead of scores;
- "score": the trusted scorer. No candidate Python runs: the child rebuilds the candidate from the job's
  exported computation (`exported.load_candidate`, which checks it) and calls `entry(candidate, **payload)`.

Protocol (frames: 4-byte big-endian length + body; also used by `sandbox/docker_backend.py`):
- host -> worker, pickle: first the init dict {entry, root, function_name, payload (pickled bytes), preload,
  limits (Limits as a dict), scratch, scratch_keep, drop_uid (int or None), isolated (bool), nproc_extra,
  gpu (bool, optional: GPU mode's rlimits), stage (optional, default "run"), inputs (the task's input
  specifications, "score" stage), cache_gid (optional: the group that shares the compilation cache, "score"
  stage)}, then one {job_id, source, parameters, exported} per job;
- worker -> host, JSON: {"type": "ready", "startup_s", "startup_cpu_s", "pid"} or {"type": "error", "message"}, then per job
  {"type": "result", "outcome": <Outcome name>, "scores", "details", "error", "timings", "output",
  "anomaly", "child_s", "max_rss_mb"}.
"""

from __future__ import annotations

import gc
import json
import math
import os
import pickle
import resource
import select
import signal
import struct
import sys
import time
import traceback
import types

MAX_FRAME_BYTES = 1 << 30
MAX_RESULT_BYTES = 8 << 20
ERROR_TAIL_CHARS = 4000
_HEADER = struct.Struct("!I")

#: Virtual memory (MiB) that XLA's CPU backend maps when a child first uses JAX: measured 1.0 GiB with jax 0.10
#: on a 2-core machine (thread stacks and allocator arenas), not counted against the candidate's memory_mb.
JAX_BACKEND_RESERVE_MB = 1536

#: GPU mode: private writable memory (MiB, what RLIMIT_DATA counts) that XLA's CPU backend adds when a child
#: first uses JAX: measured 84 MiB with jax 0.10 on a 2-core machine (thread stacks, allocator arenas).
JAX_BACKEND_DATA_RESERVE_MB = 512

#: GPU mode: private writable memory (MiB) allowed for starting the CUDA driver and XLA's GPU backend in a
#: child (driver state, cuBLAS/cuDNN handles, host-side buffers), not counted against memory_mb. An allowance,
#: not a measurement: tests/integration/test_sandbox_gpu.py reports the measured value where a GPU exists.
GPU_BACKEND_DATA_RESERVE_MB = 4096

# Words in a dying child's output that mean an allocation failed under the address-space limit.
_MEMORY_WORDS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "RESOURCE_EXHAUSTED", "Out of memory",
                 "out of memory", "Failed to allocate", "mmap failed", "pthread_create")


# --------------------------------------------------------------------------------------------------- framing
def read_frame(fd: int) -> bytes | None:
    """Returns one length-prefixed frame from `fd`, or None at end of file."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    return _read_exact(fd, size)


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def write_frame(fd: int, data: bytes) -> None:
    """Writes one length-prefixed frame to `fd`."""
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


# --------------------------------------------------------------------------------------------------- worker
class HostGone(Exception):
    """The host closed the command pipe while a candidate ran: it died."""


class Worker:
    """State of the zygote between jobs."""

    def __init__(self, init: dict, command_fd: int, reply_fd: int) -> None:
        self.init = init
        self.command_fd = command_fd
        self.reply_fd = reply_fd
        self.entry = None  # the entry function, when it could be imported before forking
        self.payload: dict = {}
        self.exported = None  # sandbox/exported.py, in the "score" stage
        self.pid = os.getpid()
        self.child_pid: int | None = None  # the candidate's process while a job runs

    def start(self) -> dict:
        """Imports the heavy modules and the entry once; returns the ready message."""
        started = time.perf_counter()
        root = self.init["root"]
        sys.path.insert(0, root)
        for name in self.init["preload"]:
            try:
                __import__(name)
            except ImportError:
                pass
        self.entry = load_entry(self.init["entry"], root)
        if self.init.get("stage") == "score":
            # the package module when the scorer's code can import it (the fitter then sees the candidate's lifted
            # constants, `engine/constants.py`), else the file beside this one
            try:
                import sandbox.exported as exported
            except ImportError:
                exported = load_module(os.path.join(os.path.dirname(os.path.abspath(__file__)), "exported.py"))
            self.exported = exported
            exported.prepare()
        self.payload = pickle.loads(self.init["payload"])
        problem = fork_hazard()
        if problem:
            return {"type": "error", "message": problem}
        # Move everything imported so far out of the garbage collector's reach: a collection in a child would
        # otherwise visit (write to) every object and copy the page each lives on. Measured: a trivial candidate
        # costs the child 1.0 ms of CPU instead of 4.0 ms.
        gc.freeze()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"type": "ready", "startup_s": time.perf_counter() - started, "pid": os.getpid(),
                "startup_cpu_s": usage.ru_utime + usage.ru_stime}

    def serve(self) -> None:
        """Runs jobs until the host closes the command pipe, even in the middle of one (the host died)."""
        try:
            while (frame := read_frame(self.command_fd)) is not None:
                reply = self.run_job(pickle.loads(frame), host_fd=self.command_fd)
                write_frame(self.reply_fd, json.dumps(reply, default=_jsonable).encode())
        except HostGone:
            pass

    def stop(self) -> None:
        """Kills the running candidate and everything it started; outside a sandbox's own tmpfs, also removes the
        scratch folder, which the host would otherwise leave behind if it died."""
        if self.child_pid is not None:
            for kill in (os.kill, os.killpg):  # the child, then its process group (it may not have made one yet)
                try:
                    kill(self.child_pid, signal.SIGKILL)
                except OSError:
                    pass
            try:  # SIGKILL takes effect when the child is next scheduled: until it is reaped, it may still write
                os.waitpid(self.child_pid, 0)
            except OSError:
                pass
        if self.init["drop_uid"] is not None or self.init["isolated"]:
            stray_processes(self.init["drop_uid"])
        if not self.init["isolated"]:
            import shutil

            # a copy the candidate forked may still write for a moment after the SIGKILL; remove what it wrote
            for _ in range(40):
                shutil.rmtree(self.init["scratch"], ignore_errors=True)
                if not os.path.exists(self.init["scratch"]):
                    break
                time.sleep(0.05)

    def run_job(self, job: dict, host_fd: int | None = None) -> dict:
        """Runs one job in a forked child and returns the reply for the host.

        Args:
            host_fd: the command pipe, watched while the child runs: the host sends nothing then, so the pipe
                turns readable only when the host has gone, and HostGone is raised (the candidate still runs).
        """
        limits = self.init["limits"]
        result_r, result_w = os.pipe()
        output_r, output_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        forked = time.perf_counter()
        # The host's death (SIGTERM, `_die_with_host`) must not be handled between the fork and `child_pid`: the
        # handler would then not know the child, which would go on, make its job folder after the scratch folder
        # was removed, and leave it behind. A SIGTERM that arrives meanwhile waits until child_pid is set.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            pid = os.fork()
            if pid != 0:
                self.child_pid = pid
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # in the child too: it starts with none pending
        if pid == 0:  # the child: never returns
            child_pid = os.getpid()
            try:
                os.close(result_r)
                os.close(output_r)
                child_main(self, job, result_w, output_w)
            except BaseException as error:  # the child's outermost frame: report a failed set-up, then exit
                if os.getpid() != child_pid:  # a copy the candidate forked: only the child itself reports
                    os._exit(70)
                _write_all(result_w, json.dumps({"outcome": "CRASHED", "error": "the sandbox could not prepare the "
                                                 "candidate process: " + _tail("".join(
                                                     traceback.format_exception(error)))}).encode())
            finally:
                os._exit(70)
        os.close(result_w)
        os.close(output_w)
        result, output, output_bytes, status, usage = collect(pid, result_r, output_r,
                                                             limits["max_output_kb"] * 1024, host_fd)
        reply = classify(result, output, status, limits)
        reply["type"] = "result"
        reply["output"] = output.decode("utf-8", "replace")
        if output_bytes > len(output):
            reply["output"] += f"\n[output truncated: {output_bytes} bytes printed, first {len(output)} kept]"
        reply["child_s"] = time.perf_counter() - forked
        reply["max_rss_mb"] = usage.ru_maxrss / 1024
        if not isinstance(reply.get("timings"), dict):
            reply["timings"] = {}
        reply["timings"]["child_cpu"] = usage.ru_utime + usage.ru_stime  # CPU seconds, all threads
        try:  # leftovers of the candidate's session (background children) die now
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        self.child_pid = None
        if self.init["drop_uid"] is not None or self.init["isolated"]:
            reply["anomaly"] = stray_processes(self.init["drop_uid"])
        clear_scratch(self.init["scratch"], keep=self.init["scratch_keep"])
        return reply


def collect(pid: int, result_r: int, output_r: int, max_output_bytes: int, host_fd: int | None = None):
    """Reads the child's result and output until it exits; returns (result, output, output_bytes, status, rusage).

    Output beyond `max_output_bytes` is read and dropped. A background grandchild that keeps a pipe open does
    not keep us waiting once the child itself has exited. Raises HostGone when `host_fd` turns readable first.
    """
    result, output = bytearray(), bytearray()
    output_bytes = 0
    open_fds = {result_r, output_r}
    exited = None
    while open_fds:
        watched = [*open_fds, host_fd] if host_fd is not None and exited is None else list(open_fds)
        ready, _, _ = select.select(watched, [], [], 0.05 if exited is None else 0)
        if host_fd is not None and host_fd in ready:
            raise HostGone("the host closed the command pipe while a candidate ran")
        for fd in ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                os.close(fd)
                open_fds.discard(fd)
            elif fd == output_r:
                output_bytes += len(chunk)
                room = max_output_bytes - len(output)
                if room > 0:
                    output += chunk[:room]
            elif len(result) <= MAX_RESULT_BYTES:
                result += chunk
        if exited is None:
            waited_pid, status, usage = os.wait4(pid, os.WNOHANG)
            if waited_pid:
                exited = (status, usage)
        elif not ready:
            break
    for fd in open_fds:
        os.close(fd)
    if exited is None:
        exited = os.wait4(pid, 0)[1:]
    return bytes(result), bytes(output), output_bytes, exited[0], exited[1]


def classify(result: bytes, output: bytes, status: int, limits: dict) -> dict:
    """Returns the verdict for one child from what it wrote and how it ended."""
    tail = output[-ERROR_TAIL_CHARS:].decode("utf-8", "replace")
    if len(result) > MAX_RESULT_BYTES:
        return {"outcome": "INVALID_OUTPUT", "error": f"the entry's result exceeds {MAX_RESULT_BYTES} bytes"}
    if result:
        try:
            verdict = json.loads(result)
        except ValueError:
            verdict = None
        if isinstance(verdict, dict) and "outcome" in verdict:
            return verdict
        return {"outcome": "CRASHED", "error": "the candidate wrote a malformed result" + _output_tail(tail)}
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        if number == signal.SIGXCPU:
            return {"outcome": "TIMEOUT", "error": "exceeded the CPU-time limit (SIGXCPU)"}
        if number == signal.SIGXFSZ:
            return {"outcome": "CRASHED", "error": f"wrote a file larger than max_file_mb={limits['max_file_mb']}"}
        if any(word in tail for word in _MEMORY_WORDS):
            return {"outcome": "OUT_OF_MEMORY",
                    "error": f"killed by {name} after an allocation failed" + _output_tail(tail)}
        return {"outcome": "CRASHED", "error": f"killed by {name}" + _output_tail(tail)}
    code = os.WEXITSTATUS(status)
    if any(word in tail for word in _MEMORY_WORDS) and code != 0:
        return {"outcome": "OUT_OF_MEMORY", "error": f"exited with status {code} after an allocation failed:\n{tail}"}
    return {"outcome": "CRASHED", "error": f"exited with status {code} before returning a result" + _output_tail(tail)}


def _output_tail(tail: str) -> str:
    """Returns what ends a message about a dead child: its output's tail, or that it printed nothing."""
    return f"; output tail:\n{tail}" if tail.strip() else "; it printed nothing."


def stray_processes(uid: int | None) -> str:
    """Kills and counts the candidate's processes still alive after it returned.

    With a dropped uid these are the processes of that uid; otherwise (inside a pid namespace) every process
    but us and the namespace's init.
    """
    mine = {1, os.getpid()}
    strays = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or (uid is None and int(name) in mine):
            continue
        try:
            with open(f"/proc/{name}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
            if fields["State"].split()[0] in ("Z", "X"):
                continue
            if uid is not None and int(fields["Uid"].split()[0]) != uid:
                continue
            os.kill(int(name), signal.SIGKILL)
            strays += 1
        except (OSError, KeyError, ValueError):
            pass
    return f"{strays} background process(es) survived the candidate and were killed" if strays else ""


def clear_scratch(scratch: str, keep: list[str]) -> None:
    """Empties the scratch directory, so that nothing a candidate wrote reaches the next one or fills the tmpfs.

    `keep` names the top-level entries that lead to read-only paths bound into the scratch (e.g. a task root
    under /tmp); candidates cannot write into those, since bwrap creates them owned by root with mode 0755.
    """
    import shutil

    for name in os.listdir(scratch):
        if name in keep:
            continue
        path = os.path.join(scratch, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def fork_hazard() -> str:
    """Returns why forking now would be unsafe (threads running, a JAX backend or CUDA started), or ""."""
    if "jax" in sys.modules:
        from jax._src import xla_bridge

        if xla_bridge._backends:
            return ("a JAX backend was initialised while importing the task's entry or unpickling its payload; "
                    "create JAX arrays inside the entry function and pass numpy arrays in the payload.")
    device = open_gpu_device()
    if device:
        return (f"the GPU was opened ({device}) while importing the task's entry or unpickling its payload; a CUDA "
                "context does not survive the fork into each candidate's process. Do not use the GPU at import "
                "time (no JAX arrays, no CUDA calls); use it inside the entry function.")
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        return (f"the worker has {threads} threads after importing the task's entry and payload; expected 1. "
                "Do not start threads at import time (set OPENBLAS_NUM_THREADS=1 for numpy).")
    return ""


def open_gpu_device(fd_dir: str = "/proc/self/fd") -> str:
    """Returns an NVIDIA device node this process holds open (the CUDA driver was started), or "".

    Merely loading libcuda is harmless (importing jax with its CUDA plugin may do so); starting the driver
    (cuInit) opens /dev/nvidiactl and the GPUs' nodes.
    """
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("/dev/nvidia"):
            return target
    return ""


def load_entry(entry: str, root: str):
    """Returns the function named by "path/to/score.py:function" (path relative to `root` or absolute)."""
    path, _, function_name = entry.rpartition(":")
    if not path or not function_name:
        raise ValueError(f"entry {entry!r} is not of the form 'path/to/score.py:function'")
    path = path if os.path.isabs(path) else os.path.join(root, path)
    module = load_module(path)
    function = getattr(module, function_name, None)
    if not callable(function):
        found = ", ".join(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ValueError(f"entry file {path} has no function {function_name!r}. Found: {found or 'none'}.")
    return function


def load_module(path: str) -> types.ModuleType:
    """Imports the Python file at `path` as a module of a package that stands for its folder.

    The folder becomes a package of its own, named after it and a hash of its path (`_task_ddm_1a2b3c4d`), so a
    task's files import each other relatively (`from .score import score`) wherever the task's folder lies, and
    two folders of the same name do not share modules. A file already imported from the same path is reused.
    """
    import hashlib
    import importlib.util
    import re

    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    package = "_task_{}_{}".format(re.sub(r"\W", "_", os.path.basename(folder)),
                                   hashlib.sha256(folder.encode()).hexdigest()[:8])
    if package not in sys.modules:
        parent = types.ModuleType(package)
        parent.__path__ = [folder]
        parent.__package__ = package
        sys.modules[package] = parent
    module_name = package + "." + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    loaded = sys.modules.get(module_name)
    if loaded is not None and getattr(loaded, "__file__", None) == path:
        return loaded
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"entry file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


# --------------------------------------------------------------------------------------------------- child
def child_main(worker: Worker, job: dict, result_w: int, output_w: int) -> None:
    """Runs one candidate in the freshly forked child and writes its verdict to `result_w`; never returns."""
    init = worker.init
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the worker's handler would remove the scratch we work in
    os.setsid()
    os.close(worker.command_fd)
    os.close(worker.reply_fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(output_w, 1)
    os.dup2(output_w, 2)
    os.closerange(3, result_w)
    os.closerange(result_w + 1, 1 << 16)
    started = time.perf_counter()
    workdir = os.path.join(init["scratch"], f"job-{job['job_id']}-{os.getpid()}")
    os.makedirs(workdir, exist_ok=True)
    uid = init["drop_uid"]
    if uid is not None:
        os.chown(workdir, uid, uid)
    os.chdir(workdir)
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir
    apply_limits(init["limits"], init["nproc_extra"], gpu=init.get("gpu", False))
    shares_cache = init.get("stage") == "score" and os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if uid is not None:
        # the trusted scorer's compilation cache is shared by workers of other uids through a group (sandbox/pool.py)
        os.setgroups([init["cache_gid"]] if shares_cache and init.get("cache_gid") is not None else [])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    if shares_cache:
        os.umask(0o007)
    # Die with the worker, whatever killed it. Set after the uid change, which clears it; a worker that died
    # before that is no longer our parent.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != worker.pid:
        os._exit(0)
    child_pid = os.getpid()
    verdict = evaluate(job, worker, started)
    if os.getpid() != child_pid:
        # A copy of the candidate that it forked got back here (e.g. `while True: os.fork()` until the process
        # limit): its verdict would be written after the child's into the same pipe, and would garble it.
        os._exit(0)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # the candidate may have replaced or closed them; the verdict matters more
        pass
    _write_all(result_w, json.dumps(verdict, default=_jsonable).encode())
    os._exit(0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def apply_limits(limits: dict, nproc_extra: int, gpu: bool = False) -> None:
    """Sets the rlimits `plan_limits` chooses for this process (soft = hard)."""
    # /proc/self/statm (pages): size is VmSize; data is VmData plus the stack (at most a few MiB more). It is
    # much cheaper for the kernel to produce than /proc/self/status.
    with open("/proc/self/statm") as statm:
        fields = statm.read().split()
    page = resource.getpagesize()
    plan = plan_limits(limits, nproc_extra, gpu=gpu, vm_size_bytes=int(fields[0]) * page,
                       vm_data_bytes=int(fields[5]) * page, jax_loaded="jax" in sys.modules,
                       cpu_count=os.cpu_count() or 1)
    for kind, value in plan:
        resource.setrlimit(kind, (value, value))


def plan_limits(limits: dict, nproc_extra: int, *, gpu: bool, vm_size_bytes: int, vm_data_bytes: int,
                jax_loaded: bool, cpu_count: int) -> list[tuple[int, int]]:
    """Returns the (resource.RLIMIT_*, value) pairs for one candidate child.

    CPU mode bounds the address space (RLIMIT_AS): the child's size at fork (Python and the preloaded modules,
    ~0.4 GB), plus JAX_BACKEND_RESERVE_MB when jax is loaded (the virtual memory XLA's CPU backend maps when it
    starts), plus `memory_mb`. GPU mode cannot: CUDA reserves address ranges far larger than any memory limit
    (unusable memory, PROT_NONE), and fails to start or dies with std::bad_alloc under RLIMIT_AS. It bounds
    RLIMIT_DATA instead, which (Linux >= 4.7) counts private writable memory, i.e. what malloc, numpy and
    mmap(MAP_ANONYMOUS) hand out, and not such reservations: the child's private writable memory at fork, plus
    JAX_BACKEND_DATA_RESERVE_MB and GPU_BACKEND_DATA_RESERVE_MB when jax is loaded, plus `memory_mb`. Either
    way `memory_mb` is what the candidate and the entry may allocate themselves.

    Both modes also bound CPU seconds (timeout_s on every core, so SIGXCPU comes after the host's wall-clock
    kill), processes and threads (RLIMIT_NPROC: max_processes + nproc_extra for the runtime's own threads),
    file size, and forbid core files.

    Args:
        limits: `sandbox.results.Limits` as a dict.
        nproc_extra: threads allowed on top of limits["max_processes"] for JAX's (and CUDA's) thread pools.
        gpu: plan for a child that may start CUDA.
        vm_size_bytes, vm_data_bytes: the child's VmSize and VmData (/proc/self/status) at fork, in bytes.
        jax_loaded: whether jax was imported before forking (its backend then starts in the child).
        cpu_count: cores on this machine.
    """
    mib = 1 << 20
    if gpu:
        reserve_mb = JAX_BACKEND_DATA_RESERVE_MB + GPU_BACKEND_DATA_RESERVE_MB if jax_loaded else 0
        memory = (resource.RLIMIT_DATA, vm_data_bytes + (reserve_mb + limits["memory_mb"]) * mib)
    else:
        reserve_mb = JAX_BACKEND_RESERVE_MB if jax_loaded else 0
        memory = (resource.RLIMIT_AS, vm_size_bytes + (reserve_mb + limits["memory_mb"]) * mib)
    cpu_s = int(math.ceil(limits["timeout_s"] * max(1, cpu_count))) + 1
    return [memory, (resource.RLIMIT_CPU, cpu_s),
            (resource.RLIMIT_NPROC, limits["max_processes"] + nproc_extra),
            (resource.RLIMIT_FSIZE, limits["max_file_mb"] * mib), (resource.RLIMIT_CORE, 0)]


def evaluate(job: dict, worker: Worker, started: float) -> dict:
    """Builds the candidate (its module, or in the "score" stage its exported computation), calls the entry and
    returns the verdict (a JSON-able dict)."""
    init = worker.init
    stage = init.get("stage", "run")
    timings = {"startup": time.perf_counter() - started}
    arguments = {}
    try:
        if stage == "score":
            begun = time.perf_counter()
            try:
                candidate = worker.exported.load_candidate(
                    job["exported"], function_name=init["function_name"], inputs=init["inputs"],
                    parameters={name: (low, high) for name, low, high in job["parameters"]},
                    constants={name: float(value) for name, value in job.get("constants") or ()})
            except worker.exported.ExportRejected as error:
                return {"outcome": "INVALID_OUTPUT", "error": str(error), "timings": timings}
            timings["load"] = time.perf_counter() - begun
        else:
            candidate = build_module(job["source"], init["function_name"])
            if isinstance(candidate, dict):
                return {**candidate, "timings": timings}
            if stage == "trace":
                arguments = {"parameters": [name for name, _, _ in job["parameters"]]}
        entry = worker.entry or load_entry(init["entry"], init["root"])
    except BaseException as error:  # the outermost frame of a candidate: classify everything
        return _exception_verdict(error, timings, init["limits"]["max_processes"])
    try:
        begun = time.perf_counter()
        if stage == "trace" and job.get("lifted_source"):
            lifted = trace_lifted(job, worker, entry, arguments)
            if lifted is not None:
                timings["entry"] = time.perf_counter() - begun
                return validate_export(lifted, timings, lifted=True)
        returned = entry(candidate, **worker.payload, **arguments)
        timings["entry"] = time.perf_counter() - begun
        return validate_export(returned, timings) if stage == "trace" else validate(returned, timings)
    except ValueError as error:
        return {"outcome": "INVALID_OUTPUT", "error": _tail(f"{type(error).__name__}: {error}"), "timings": timings}
    except BaseException as error:  # the outermost frame of a candidate: classify everything
        return _exception_verdict(error, timings, init["limits"]["max_processes"])


def build_module(source: str, function_name: str) -> types.ModuleType | dict:
    """Executes the candidate's source as a module; returns it, or an INVALID_OUTPUT verdict when it lacks the
    evolved function."""
    import linecache

    module = types.ModuleType("candidate")
    module.__file__ = "candidate.py"
    module.__source__ = source
    linecache.cache["candidate.py"] = (len(source), None, source.splitlines(True), "candidate.py")
    sys.modules["candidate"] = module
    exec(compile(source, "candidate.py", "exec"), module.__dict__)
    function = module.__dict__.get(function_name)
    if not callable(function):
        defined = sorted(n for n, v in module.__dict__.items() if callable(v) and not n.startswith("_"))
        return {"outcome": "INVALID_OUTPUT",
                "error": f"candidate defines no function {function_name!r}; "
                         f"it defines: {', '.join(defined) or 'no functions'}"}
    return module


def trace_lifted(job: dict, worker: Worker, entry, arguments: dict):
    """Exports the candidate with its literals lifted into parameters (`engine/constants.py`); returns what the
    entry returned, or None when that version does not build or trace (the source as written is traced then)."""
    try:
        module = build_module(job["lifted_source"], worker.init["function_name"])
        if isinstance(module, dict):
            return None
        names = [*arguments["parameters"], *(str(name) for name in job.get("constants") or ())]
        return entry(module, **worker.payload, **{**arguments, "parameters": names})
    except Exception:  # any failure of the rewritten version: fall back to the candidate as written
        return None


def validate_export(returned, timings: dict, *, lifted: bool = False) -> dict:
    """The tracing stage's verdict: the exported computation as text, and nothing the host would believe (whether
    the lifted version was exported only decides which parameters the scorer's check expects)."""
    exported = returned.get("exported") if isinstance(returned, dict) else None
    if not isinstance(exported, str):
        return {"outcome": "CRASHED", "timings": timings, "error": "tracing returned no exported computation"}
    for phase, seconds in (returned.get("timings") or {}).items():
        number = _as_float(seconds)
        if number is not None and math.isfinite(number):
            timings[str(phase)] = number
    return {"outcome": "OK", "details": {"exported": exported, "lifted": lifted}, "timings": timings}


def _exception_verdict(error: BaseException, timings: dict, max_processes: int) -> dict:
    frames = error.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename == __file__:  # our own frames say nothing
        frames = frames.tb_next
    text = "".join(traceback.format_exception(type(error), error, frames))
    lines = text.splitlines()
    tail = _tail("\n".join(lines[-30:]))
    memory = isinstance(error, MemoryError) or any(word in f"{type(error).__name__}: {error}"
                                                    for word in _MEMORY_WORDS[1:6])
    if _process_limit_reached(error):
        # The traceback alone ends in "Resource temporarily unavailable", which names no limit.
        tail += (f"\nthe candidate could not start another process or thread: it reached max_processes="
                 f"{max_processes} (RLIMIT_NPROC, which counts threads too).")
    return {"outcome": "OUT_OF_MEMORY" if memory else "CRASHED", "error": tail, "timings": timings}


def _process_limit_reached(error: BaseException) -> bool:
    """Returns whether `error` is how fork() or a new thread fails under RLIMIT_NPROC (EAGAIN)."""
    import errno

    if isinstance(error, BlockingIOError):
        return error.errno == errno.EAGAIN
    return isinstance(error, RuntimeError) and "can't start new thread" in str(error)


def validate(returned, timings: dict) -> dict:
    """Splits the entry's mapping into finite float scores, details and timings; rejects a bad "score"."""
    from collections.abc import Mapping

    if not isinstance(returned, Mapping) and callable(getattr(returned, "record", None)):
        returned = returned.record()  # a typed result (engine.task.results.TaskResult) as plain data
    if not isinstance(returned, Mapping):
        return {"outcome": "INVALID_OUTPUT", "timings": timings,
                "error": f"the entry returned {type(returned).__name__}; expected a mapping with a float 'score'"}
    scores, details = {}, {}
    for key, value in returned.items():
        key = str(key)
        if key == "timings" and isinstance(value, Mapping):
            for phase, seconds in value.items():
                number = _as_float(seconds)
                if number is not None and math.isfinite(number):
                    timings[str(phase)] = number
            continue
        number = _as_float(value)
        if number is not None and math.isfinite(number):
            scores[key] = number
        else:
            details[key] = value
    if "score" not in returned:
        return {"outcome": "INVALID_OUTPUT", "timings": timings, "details": details,
                "error": f"the entry returned no 'score'; keys: {', '.join(map(str, returned)) or 'none'}"}
    if "score" not in scores:
        return {"outcome": "INVALID_OUTPUT", "timings": timings, "details": details,
                "error": f"'score' must be a finite float; got {_tail(repr(returned['score']), 200)}"}
    return {"outcome": "OK", "scores": scores, "details": details, "timings": timings}


def _as_float(value) -> float | None:
    """Returns a float for Python and numpy/jax floating scalars (0-d arrays included); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return value
    dtype = getattr(value, "dtype", None)
    if dtype is not None and getattr(value, "shape", None) == () and getattr(dtype, "kind", "") == "f":
        return float(value)
    return None


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return _tail(repr(value), 200)


def _tail(text: str, limit: int = ERROR_TAIL_CHARS) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


# --------------------------------------------------------------------------------------------------- main
def main() -> int:
    # Move the protocol off fds 0/1 so that stray prints cannot corrupt it and children never inherit it.
    command_fd, reply_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    _set_not_dumpable()
    host_pid = os.getppid()
    frame = read_frame(command_fd)
    if frame is None:
        return 1
    worker = Worker(pickle.loads(frame), command_fd, reply_fd)
    _die_with_host(worker, host_pid)
    try:
        try:
            ready = worker.start()
        except BaseException as error:  # report why the worker cannot start, then stop
            ready = {"type": "error", "message": _tail("".join(traceback.format_exception(error)))}
        write_frame(reply_fd, json.dumps(ready).encode())
        if ready["type"] != "ready":
            return 1
        worker.serve()
        return 0
    finally:  # the host has gone, or we could not start: nothing of ours outlives us
        worker.stop()


def _die_with_host(worker: Worker, host_pid: int) -> None:
    """Makes the worker stop its candidate, clean up and exit when the process that started it dies.

    Without bubblewrap nothing else would: the worker and its candidate run in process groups of their own, so a
    killed engine (kill -9, a second Ctrl-C) would leave them running, and the scratch folder behind. The kernel
    sends SIGTERM when the host thread that started us ends (the whole engine, or the thread that owns this
    sandbox). The closed command pipe says the same; `Worker.serve` watches it.
    """
    def on_host_gone(signum: int, frame: object) -> None:
        worker.stop()
        os._exit(1)

    signal.signal(signal.SIGTERM, on_host_gone)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != host_pid:  # the host died before the signal was set
        on_host_gone(signal.SIGTERM, None)


PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
_libc = None


def _prctl(option: int, value: int) -> None:
    """Calls prctl(2), where the C library has it (Linux); elsewhere does nothing."""
    global _libc
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None)
        _libc.prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _set_not_dumpable() -> None:
    """Stops processes of the same uid (the candidate, when we cannot drop to another uid) reading our memory."""
    _prctl(PR_SET_DUMPABLE, 0)


if __name__ == "__main__":
    sys.exit(main())
