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
- `--die-with-parent`, so killing the worker's bwrap kills everything inside it, and so does the engine's end,
  SIGKILL included.

GPU mode (`ProcessSandbox(gpu=True)`, or a JAX_PLATFORMS that names cuda): `--dev /dev` gives the worker a
minimal /dev without GPUs, so the NVIDIA device nodes that exist on the host (`gpu_device_nodes`) are bound
into it with `--dev-bind-try`, the host's LD_LIBRARY_PATH and CUDA_DEVICE_ORDER are passed through
(`GPU_PASSTHROUGH_ENV`), CUDA's JIT cache is off, and the folders holding the NVIDIA driver's libcuda
(`gpu_library_dirs`) are bound back read-only where a hidden directory (e.g. /run/nvidia/driver) covered them.
Every worker on a machine can open every GPU there: CUDA_VISIBLE_DEVICES chooses the device a candidate uses,
it does not stop a candidate that sets its own.

As root, bwrap keeps only the capabilities the worker needs to drop privileges and clean up after a candidate
(setuid, setgid, chown, kill, dac_override, fowner);
each candidate child then drops to an unprivileged uid of its own (`allocate_uid`), where RLIMIT_NPROC is enforced
(it is not for root) and where it cannot signal or trace the worker. As a normal user, bwrap puts the worker in a
new user namespace, so RLIMIT_NPROC counts only that sandbox's processes.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import site
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Mapping, Sequence

#: Host environment variables copied into the sandbox when set (never secrets).
PASSTHROUGH_ENV = ("JAX_PLATFORMS", "XLA_FLAGS", "JAX_ENABLE_X64", "JAX_DEFAULT_MATMUL_PRECISION",
                   "JAX_TRACEBACK_FILTERING", "TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")

#: Host environment variables copied into a GPU-mode sandbox when set: where the CUDA libraries are, and how
#: CUDA numbers devices (so that CUDA_VISIBLE_DEVICES means the same GPUs as outside).
GPU_PASSTHROUGH_ENV = ("LD_LIBRARY_PATH", "CUDA_DEVICE_ORDER")

#: The NVIDIA device nodes a CUDA process may open: /dev/nvidia0, /dev/nvidia1, ..., the control and
#: unified-memory nodes, and the MIG capability folder.
_NVIDIA_NODE = re.compile(r"nvidia(\d+|ctl|-uvm|-uvm-tools|-modeset|-caps)")

#: Nodes without which CUDA cannot start (besides one /dev/nvidia<N>).
_REQUIRED_NVIDIA_NODES = ("nvidiactl", "nvidia-uvm")

#: Names of the folders that hold installed packages.
PACKAGE_FOLDERS = ("site-packages", "dist-packages")

#: Where the worker's scratch tmpfs is mounted inside the sandbox.
SANDBOX_SCRATCH = "/tmp"

_uid_lock = threading.Lock()
_uid_counter = itertools.count()


def find_bwrap() -> str | None:
    """Returns the path of a working bubblewrap executable, or None on non-Linux systems or when it is missing."""
    if not sys.platform.startswith("linux"):
        return None
    return shutil.which("bwrap")


#: The group of the scoring workers' processes when they share a compilation cache as root (`sandbox/pool.py`,
#: `share_between_uids`): the cache folder belongs to it and admits no one else. Below `allocate_uid`'s range, so
#: that no worker's own gid (its uid) is ever this one.
CACHE_GID = 199_999


def allocate_uid() -> int:
    """Returns an unprivileged uid for one sandbox's candidates, distinct per sandbox within this engine process.

    Each sandbox gets its own uid so that RLIMIT_NPROC (which counts threads too) is not shared between
    sandboxes running in parallel. The range 200000-4294000000 holds no system accounts.
    """
    with _uid_lock:
        slot = next(_uid_counter) % 1000
    return 200_000 + (os.getpid() % 4_000_000) * 1000 + slot


def sandbox_env(extra_env: Mapping[str, str] | None = None, *, scratch: str = SANDBOX_SCRATCH,
                gpu: bool = False) -> dict[str, str]:
    """Returns the complete environment of a worker: nothing from the engine but `PASSTHROUGH_ENV`.

    Args:
        extra_env: set last, over everything else (the pool's JAX_PLATFORMS, CUDA_VISIBLE_DEVICES, ...).
        scratch: the worker's HOME and TMPDIR.
        gpu: also pass `GPU_PASSTHROUGH_ENV` through.
    """
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
    if gpu:
        # The driver's JIT cache would go to the candidate's scratch, which is emptied after every candidate,
        # and can outgrow max_file_mb (SIGXFSZ kills the candidate).
        env["CUDA_CACHE_DISABLE"] = "1"
    passthrough = PASSTHROUGH_ENV + (GPU_PASSTHROUGH_ENV if gpu else ())
    env.update({name: os.environ[name] for name in passthrough if name in os.environ})
    env.update(extra_env or {})
    return env


def wants_cuda(jax_platforms: str) -> bool:
    """Returns whether a JAX_PLATFORMS value (e.g. "cuda,cpu") asks JAX for an NVIDIA GPU."""
    return any(name.strip().lower() in ("cuda", "gpu") for name in jax_platforms.split(","))


def gpu_device_nodes(dev_root: str = "/dev") -> list[tuple[str, str]]:
    """Returns (host path, path inside the sandbox) for each NVIDIA device node that exists under `dev_root`.

    Inside the sandbox every node sits in /dev under its own name, e.g. ("/dev/nvidia0", "/dev/nvidia0").
    """
    try:
        names = os.listdir(dev_root)
    except OSError:
        return []
    return [(os.path.join(dev_root, name), "/dev/" + name) for name in sorted(names) if _NVIDIA_NODE.fullmatch(name)]


def gpu_device_problem(nodes: Sequence[tuple[str, str]], drop_uid: int | None) -> str:
    """Returns why a candidate could not use CUDA with these device nodes, or "" when it can.

    Args:
        nodes: what `gpu_device_nodes` returned.
        drop_uid: the unprivileged uid candidates drop to (as root), or None when they keep ours; a dropped uid
            has no groups, so it opens a node only when the node is readable and writable by all (mode 0666,
            the NVIDIA driver's default).
    """
    by_name = {os.path.basename(host): host for host, _ in nodes}
    gpus = sorted(name for name in by_name if re.fullmatch(r"nvidia\d+", name))
    if not gpus and "nvidiactl" not in by_name:
        return ("the sandbox should give candidates an NVIDIA GPU (JAX_PLATFORMS names cuda), but this machine has "
                "no NVIDIA device nodes (expected /dev/nvidia0 and /dev/nvidiactl; is the driver loaded?). Run on a "
                "machine with a GPU, or set num_gpus_per_worker: 0 to run candidates on the CPU.")
    missing = [f"/dev/{name}" for name in _REQUIRED_NVIDIA_NODES if name not in by_name]
    if not gpus:
        missing.append("/dev/nvidia<N> (one per GPU)")
    if missing:
        hint = (" /dev/nvidia-uvm appears on the first CUDA use on the host: run `nvidia-modprobe -u -c=0` as root "
                "once." if "nvidia-uvm" not in by_name else "")
        return (f"the sandbox should give candidates an NVIDIA GPU, but {', '.join(missing)} does not exist on this "
                f"machine (found: {', '.join(sorted(by_name))}).{hint}")
    blocked = []
    for name in [*gpus, *_REQUIRED_NVIDIA_NODES]:
        path = by_name[name]
        try:
            mode = os.stat(path).st_mode
        except OSError as error:
            blocked.append(f"{path} ({error.strerror})")
            continue
        if drop_uid is not None:
            usable = mode & (stat.S_IROTH | stat.S_IWOTH) == stat.S_IROTH | stat.S_IWOTH
        else:
            usable = os.access(path, os.R_OK | os.W_OK)
        if not usable:
            blocked.append(f"{path} (mode {stat.S_IMODE(mode):04o})")
    if not blocked:
        return ""
    who = f"uid {drop_uid}, which has no groups" if drop_uid is not None else f"uid {os.geteuid()}"
    return (f"candidates run as {who} and cannot open {', '.join(blocked)}; expected the NVIDIA device nodes to be "
            "readable and writable by all (mode 0666, the driver's default NVreg_DeviceFileMode). Make them so "
            "(chmod 0666 /dev/nvidia*), run the engine as a user allowed to open them, or use backend: docker.")


@functools.lru_cache(maxsize=1)
def gpu_library_dirs() -> tuple[str, ...]:
    """Returns the folders a CUDA process loads driver libraries from: LD_LIBRARY_PATH and libcuda's folders."""
    dirs = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    ldconfig = shutil.which("ldconfig") or next((p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig")
                                                 if os.path.exists(p)), None)
    if ldconfig is not None:
        try:
            listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        for line in listing.splitlines():
            name, _, path = line.partition("=>")
            if name.strip().startswith("libcuda.so"):
                dirs.append(os.path.dirname(path.strip()))
    found = (os.path.realpath(p) for p in dirs)
    return tuple(sorted({p for p in found if os.path.isdir(p)}))


def needed_paths(task_root: str, *, python_only: bool = False) -> list[str]:
    """Returns the directories a worker must read: the Python installation, its import paths, the task root and
    the code beside this package (where the engine that a task's score imports lives, in a checkout).

    With `python_only` (the tracing stage), only the Python installation and this package's folder.
    """
    python = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(Path(__file__).parent),
              str(Path(sys.executable).resolve().parent.parent), *site.getsitepackages()}
    paths = set(python)
    if python_only:
        # The standard library's own folders (lib-dynload, a zip) lie under the prefixes, and packages can be in
        # another environment's site-packages on sys.path (a .pth file); nothing else on sys.path (the working
        # directory, a checkout) is bound back.
        prefixes = [os.path.realpath(p) for p in python]
        paths.update(p for p in sys.path if p and (any(_is_under(os.path.realpath(p), q) for q in prefixes)
                                                  or os.path.basename(os.path.realpath(p)) in PACKAGE_FOLDERS))
    else:
        paths.update({str(Path(task_root).resolve()), code_root()})
        paths.update(p for p in sys.path if p)
    return sorted(p for p in (os.path.realpath(p) for p in paths) if os.path.isdir(p))


def code_root() -> str:
    """Returns the folder holding this package and its siblings (engine, tasks): a checkout, or site-packages."""
    return str(Path(__file__).resolve().parent.parent)


def trace_hidden_paths() -> tuple[str, ...]:
    """Returns what the tracing stage hides beyond `default_hidden_paths`: the code beside this package (the
    tasks' data modules and scorers, the engine; a whole checkout, tests and all), the working directory, and the
    data mirror and download cache. The Python installation is bound back where it lies under one of them.
    """
    root = Path(code_root())
    paths = [str(root / name) for name in ("engine", "islands", "tasks")]
    python = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, *site.getsitepackages())}
    if str(root) not in python:  # a checkout, not site-packages itself
        paths.append(str(root))
    paths.append(os.getcwd())
    for name in ("DISCOVER_DATA_MIRROR", "DISCOVER_CACHE", "XDG_CACHE_HOME"):
        if os.environ.get(name):
            paths.append(os.path.expanduser(os.environ[name]))
    return tuple(p for p in dict.fromkeys(os.path.realpath(p) for p in paths) if os.path.lexists(p) and p != "/")


def default_hidden_paths() -> list[str]:
    """Returns the user's home, /root and /home: hidden from every sandbox."""
    return [p for p in {str(Path.home()), "/root", "/home"} if os.path.isdir(p)]


def scratch_entries_to_keep(task_root: str, readable_paths: Sequence[str] = ()) -> list[str]:
    """Returns the top-level names in the scratch that lead to needed paths bound back (read-only, or the
    writable compilation cache): the worker empties the rest of its scratch after each candidate."""
    prefix = SANDBOX_SCRATCH.rstrip("/") + "/"
    needed = [*needed_paths(task_root), *readable_paths]
    return sorted({p[len(prefix):].split("/")[0] for p in needed if p.startswith(prefix)})


def bwrap_command(bwrap: str, worker_argv: Sequence[str], env: Mapping[str, str], *, task_root: str,
                  hidden_paths: Sequence[str] = (), scratch_mb: int = 256, as_root: bool | None = None,
                  device_nodes: Sequence[tuple[str, str]] = (), readable_paths: Sequence[str] = (),
                  python_only: bool = False, writable_paths: Sequence[str] = ()) -> list[str]:
    """Returns the bwrap command line that runs `worker_argv` isolated as described in this module's docstring.

    Args:
        worker_argv: the command to run inside, e.g. [python, "-I", ".../zygote.py"].
        env: the complete environment inside the sandbox.
        task_root: the task directory, readable inside.
        hidden_paths: extra files or directories the worker must not see (the database, outputs).
        scratch_mb: size of the writable tmpfs at /tmp, in MiB.
        as_root: whether we run as root (default: the effective uid is 0).
        device_nodes: (host path, path inside) of device nodes to bind into the sandbox's /dev, read-write
            (GPU mode: `gpu_device_nodes()`); none by default.
        readable_paths: extra folders that must stay readable even under a hidden directory (GPU mode:
            `gpu_library_dirs()`).
        python_only: bind back only the Python installation and this package under hidden folders (the tracing
            stage; see `needed_paths`).
        writable_paths: existing folders bound read-write (the trusted scorer's compilation cache); never give
            one to a stage that runs candidate Python.
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
    for host_path, sandbox_path in device_nodes:  # after --dev, which mounts a fresh /dev without them
        command += ["--dev-bind-try", host_path, sandbox_path]
    hidden = [os.path.realpath(p) for p in [*default_hidden_paths(), *hidden_paths] if os.path.lexists(p)]
    hidden_dirs = {p for p in hidden if os.path.isdir(p)} | {"/run", "/var/tmp"}
    hidden_files = [p for p in hidden if not os.path.isdir(p)]
    writable = sorted({os.path.realpath(p) for p in writable_paths if os.path.isdir(p)})
    needed = sorted({*needed_paths(task_root, python_only=python_only), *writable,
                     *(os.path.realpath(p) for p in readable_paths if os.path.isdir(p))})
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
    mounts += [(p.count("/"), 4, ["--bind", p, p]) for p in writable]
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
