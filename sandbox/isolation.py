"""How a worker process is isolated from the machine: the bubblewrap command line and the environment it gets.

Under bubblewrap (`bwrap`) a worker gets:
- new pid, network, ipc, uts and cgroup namespaces: no network (only a down loopback), and a fresh /proc in
  which the engine's processes do not exist, so /proc/<ppid>/environ shows nothing of the engine;
- a read-only view of the filesystem, with empty tmpfs over /tmp (its private scratch, size-capped), /run,
  /var/tmp, the user's home, /root and /home, and over every `hidden_paths` entry (e.g. the SQLite database:
  directories get a tmpfs, files get /dev/null bound over them); the Python installation, the import paths and
  the task root are bound back read-only where a hidden directory covered them;
- an environment rebuilt from nothing (`--clearenv`): PATH, HOME=/tmp, TMPDIR, LANG, single-threaded BLAS and
  only the JAX/XLA variables of `PASSTHROUGH_ENV`; API keys never get in. bwrap itself is started with the same
  clean environment, so even its own /proc/1/environ is clean;
- `--die-with-parent`, so killing the worker's bwrap kills everything inside it.

As root, bwrap keeps only the capabilities the worker needs to drop privileges and clean up after a candidate
(setuid, setgid, chown, kill, dac_override, fowner);
each candidate child then drops to an unprivileged uid of its own (`allocate_uid`), where RLIMIT_NPROC is enforced
(it is not for root) and where it cannot signal or trace the worker. As a normal user, bwrap puts the worker in a
new user namespace, so RLIMIT_NPROC counts only that sandbox's processes.
"""

from __future__ import annotations

import itertools
import os
import shutil
import site
import sys
import threading
from pathlib import Path
from typing import Mapping, Sequence

#: Host environment variables copied into the sandbox when set (never secrets).
PASSTHROUGH_ENV = ("JAX_PLATFORMS", "XLA_FLAGS", "JAX_ENABLE_X64", "JAX_DEFAULT_MATMUL_PRECISION",
                   "JAX_TRACEBACK_FILTERING", "TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")

#: Where the worker's scratch tmpfs is mounted inside the sandbox.
SANDBOX_SCRATCH = "/tmp"

_uid_lock = threading.Lock()
_uid_counter = itertools.count()


def find_bwrap() -> str | None:
    """Returns the path of a working bubblewrap executable, or None on non-Linux systems or when it is missing."""
    if not sys.platform.startswith("linux"):
        return None
    return shutil.which("bwrap")


def allocate_uid() -> int:
    """Returns an unprivileged uid for one sandbox's candidates, distinct per sandbox within this engine process.

    Each sandbox gets its own uid so that RLIMIT_NPROC (which counts threads too) is not shared between
    sandboxes running in parallel. The range 200000-4294000000 holds no system accounts.
    """
    with _uid_lock:
        slot = next(_uid_counter) % 1000
    return 200_000 + (os.getpid() % 4_000_000) * 1000 + slot


def sandbox_env(extra_env: Mapping[str, str] | None = None, *, scratch: str = SANDBOX_SCRATCH) -> dict[str, str]:
    """Returns the complete environment of a worker: nothing from the engine but `PASSTHROUGH_ENV`."""
    env = {
        "PATH": os.pathsep.join(dict.fromkeys([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin",
                                               "/bin"])),
        "HOME": scratch,
        "TMPDIR": scratch,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # One BLAS thread: the worker must be single-threaded when it forks, and sandboxes run in parallel.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "JAX_PLATFORMS": "cpu",
    }
    env.update({name: os.environ[name] for name in PASSTHROUGH_ENV if name in os.environ})
    env.update(extra_env or {})
    return env


def needed_paths(task_root: str) -> list[str]:
    """Returns the directories a worker must read: the Python installation, its import paths, the task root."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(Path(__file__).parent),
             str(Path(task_root).resolve()), str(Path(sys.executable).resolve().parent.parent)}
    paths.update(site.getsitepackages())
    paths.update(p for p in sys.path if p)
    return sorted(p for p in (os.path.realpath(p) for p in paths) if os.path.isdir(p))


def default_hidden_paths() -> list[str]:
    """Returns the user's home, /root and /home: hidden from every sandbox."""
    return [p for p in {str(Path.home()), "/root", "/home"} if os.path.isdir(p)]


def scratch_entries_to_keep(task_root: str) -> list[str]:
    """Returns the top-level names in the scratch that lead to needed paths bound back read-only."""
    prefix = SANDBOX_SCRATCH.rstrip("/") + "/"
    return sorted({p[len(prefix):].split("/")[0] for p in needed_paths(task_root) if p.startswith(prefix)})


def bwrap_command(bwrap: str, worker_argv: Sequence[str], env: Mapping[str, str], *, task_root: str,
                  hidden_paths: Sequence[str] = (), scratch_mb: int = 256, as_root: bool | None = None) -> list[str]:
    """Returns the bwrap command line that runs `worker_argv` isolated as described in this module's docstring.

    Args:
        worker_argv: the command to run inside, e.g. [python, "-I", ".../zygote.py"].
        env: the complete environment inside the sandbox.
        task_root: the task directory, readable inside.
        hidden_paths: extra files or directories the worker must not see (the database, outputs).
        scratch_mb: size of the writable tmpfs at /tmp, in MiB.
        as_root: whether we run as root (default: the effective uid is 0).
    """
    as_root = os.geteuid() == 0 if as_root is None else as_root
    command = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc",
               "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if as_root:
        command += ["--cap-drop", "ALL"]
        for capability in ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER"):
            command += ["--cap-add", capability]
    else:
        command += ["--unshare-user"]
    command += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    hidden = [os.path.realpath(p) for p in [*default_hidden_paths(), *hidden_paths] if os.path.lexists(p)]
    hidden_dirs = {p for p in hidden if os.path.isdir(p)} | {"/run", "/var/tmp"}
    hidden_files = [p for p in hidden if not os.path.isdir(p)]
    needed = needed_paths(task_root)
    covered = hidden_dirs | {SANDBOX_SCRATCH}
    # A needed path that is itself a covered directory (e.g. a script's folder /tmp on sys.path) stays covered.
    rebound = [p for p in needed if p not in covered and any(_is_under(p, h) for h in covered)]
    rebound = [p for p in rebound if not any(q != p and _is_under(p, q) for q in rebound)]
    # (depth, order, args): shallow mounts first; on a tie a tmpfs, then a directory, then the bind that reopens it.
    mounts: list[tuple[int, int, list[str]]] = [
        (1, 0, ["--size", str(scratch_mb << 20), "--perms", "1777", "--tmpfs", SANDBOX_SCRATCH])]
    mounts += [(p.count("/"), 0, ["--tmpfs", p]) for p in hidden_dirs if os.path.isdir(p)]
    parents: set[str] = set()
    for path in rebound:  # bwrap would create the folders leading to a bind with mode 0700: make them 0755
        cover = max((h for h in covered if _is_under(path, h)), key=len)
        parent = os.path.dirname(path)
        while parent != cover and _is_under(parent, cover):
            parents.add(parent)
            parent = os.path.dirname(parent)
    mounts += [(p.count("/"), 1, ["--perms", "0755", "--dir", p]) for p in parents]
    mounts += [(p.count("/"), 2, ["--ro-bind", p, p]) for p in rebound]
    for path in hidden_files:
        visible = not any(_is_under(path, h) for h in covered) or any(_is_under(path, r) for r in rebound)
        if visible:
            mounts.append((path.count("/"), 3, ["--ro-bind", "/dev/null", path]))
    for _, _, args in sorted(mounts):
        command += args
    command += ["--chdir", SANDBOX_SCRATCH, "--clearenv"]
    for name, value in env.items():
        command += ["--setenv", name, value]
    return command + ["--", *worker_argv]


def _is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")
