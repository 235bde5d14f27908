"""Hostile candidates against the real sandbox: each ends classified within its limit and harms nothing.

The task context allows every import ("*",), which turns the static check off: what is tested here is the
OS-level isolation (bubblewrap namespaces, read-only filesystem, clean environment, rlimits, kill on timeout).
After each hostile candidate an honest one must get exactly its usual score from the same sandbox.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from pathlib import Path

import pytest

from sandbox import Job, Limits, Outcome, ProcessSandbox, TaskContext
from sandbox.isolation import find_bwrap

HERE = Path(__file__).resolve().parents[1] / "unit" / "sandbox"
SECRET = f"sk-discover-test-{uuid.uuid4().hex}"
TIMEOUT_S = 2.0
LIMITS = Limits(timeout_s=TIMEOUT_S, memory_mb=512, max_processes=16, max_file_mb=4, max_output_kb=16)
HONEST = ("import numpy as np\nimport jax.numpy as jnp\n"
          "def agent(x):\n    return float(np.sum(np.ones(3))) + float(jnp.sum(jnp.ones(2)))\n")

needs_bwrap = pytest.mark.skipif(find_bwrap() is None, reason="needs bubblewrap (bwrap)")


@pytest.fixture(scope="module")
def task_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("task")
    root.chmod(0o755)  # readable by the candidate's uid, so that only the read-only mount stops writes
    shutil.copy(HERE / "entry_call.py", root / "entry_call.py")
    (root / "keep.txt").write_text("must survive")
    (root / "programs.sqlite").write_text("SECRET-DATABASE-CONTENT")
    return root


@pytest.fixture(scope="module")
def sandbox(task_root: Path):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISCOVER_TEST_SECRET", SECRET)
        patch.setenv("OPENAI_API_KEY", SECRET)
        context = TaskContext(entry="entry_call.py:score", payload={"x": 2.0}, function_name="agent",
                              allowed_imports=("*",), root=str(task_root), limits=LIMITS)
        with ProcessSandbox(context, use_bwrap=True, hidden_paths=[str(task_root / "programs.sqlite")]) as sandbox:
            assert_next_candidate_untouched(sandbox)  # starts the worker
            yield sandbox


def run(sandbox: ProcessSandbox, source: str, job_id: int = 1):
    started = time.monotonic()
    result = sandbox.run(Job(job_id, source))
    candidate_s = time.monotonic() - started - result.timings.get("startup", 0.0)  # minus a worker's start-up
    assert candidate_s < TIMEOUT_S + 10.0, "the candidate was not stopped within its limit"  # slack: busy CI
    return result


def assert_next_candidate_untouched(sandbox: ProcessSandbox) -> None:
    result = run(sandbox, HONEST, job_id=2)
    assert result.outcome is Outcome.OK, result.error
    assert result.scores == {"score": 5.0}
    assert SECRET not in repr(result)


def processes_of_uid(uid: int | None) -> list[int]:
    """Live (non-zombie) processes of `uid` on this machine."""
    if uid is None:
        return []
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status") as status:
                    fields = dict(line.split(":", 1) for line in status if ":" in line)
                if int(fields["Uid"].split()[0]) == uid and fields["State"].split()[0] not in ("Z", "X"):
                    found.append(int(name))
            except (OSError, KeyError, ValueError):
                pass
    return found


@needs_bwrap
@pytest.mark.slow
def test_infinite_loop_times_out_and_the_worker_is_replaced(sandbox) -> None:
    before = sandbox.workers_started
    result = run(sandbox, "def agent(x):\n    while True:\n        pass\n")
    assert result.outcome is Outcome.TIMEOUT
    assert "killed and replaced" in result.error
    assert TIMEOUT_S <= result.wall_time_s < TIMEOUT_S + 2.0, "a warm worker pays no start-up"
    assert_next_candidate_untouched(sandbox)
    assert sandbox.workers_started == before + 1


@needs_bwrap
@pytest.mark.slow
def test_fork_bomb_is_contained_and_killed(sandbox) -> None:
    result = run(sandbox, "import os\ndef agent(x):\n    while True:\n        try:\n            os.fork()\n"
                          "        except OSError:\n            pass\n")
    assert result.outcome is Outcome.TIMEOUT
    time.sleep(0.2)
    assert processes_of_uid(sandbox.drop_uid) == []
    assert_next_candidate_untouched(sandbox)


@pytest.mark.parametrize("use_bwrap", [pytest.param(True, marks=needs_bwrap), False], ids=["bwrap", "plain"])
def test_a_fork_bomb_at_import_says_it_reached_max_processes(task_root: Path, use_bwrap: bool) -> None:
    context = TaskContext(entry="entry_call.py:score", payload={"x": 2.0}, function_name="agent",
                          allowed_imports=("*",), root=str(task_root), limits=LIMITS)
    with ProcessSandbox(context, use_bwrap=use_bwrap, preload=()) as own:
        bomb = run(own, "import os\nwhile True:\n    os.fork()\ndef agent(x):\n    return 1.0\n")
        assert bomb.outcome is Outcome.CRASHED
        # Every copy the bomb forked ends in the same exception; only the candidate's own process reports it.
        assert bomb.error.strip().splitlines()[-1] == (
            "the candidate could not start another process or thread: it reached max_processes=16 "
            "(RLIMIT_NPROC, which counts threads too).")
        time.sleep(0.2)
        assert processes_of_uid(own.drop_uid) == []
        assert own.run(Job(2, "def agent(x):\n    return x\n")).scores == {"score": 2.0}


@needs_bwrap
@pytest.mark.parametrize("allocation", ["bytearray(50 * 2**30)", "__import__('numpy').ones(50 * 2**27)"])
def test_allocating_50_gb_is_out_of_memory(sandbox, allocation: str) -> None:
    result = run(sandbox, f"def agent(x):\n    block = {allocation}\n    return 1.0\n")
    assert result.outcome is Outcome.OUT_OF_MEMORY
    assert result.wall_time_s - result.timings["startup"] < TIMEOUT_S  # stopped by the limit, not the clock
    assert_next_candidate_untouched(sandbox)


@needs_bwrap
def test_no_network_not_even_loopback(sandbox) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    result = run(sandbox, f"import socket\ndef agent(x):\n    s = socket.socket()\n    s.settimeout(1)\n"
                          f"    s.connect(('127.0.0.1', {port}))\n    return 1.0\n")
    assert result.outcome is Outcome.CRASHED
    assert "OSError" in result.error or "ConnectionRefusedError" in result.error
    with pytest.raises(socket.timeout):
        listener.accept()
    listener.close()
    assert_next_candidate_untouched(sandbox)


@needs_bwrap
def test_the_engine_environment_is_unreadable(sandbox) -> None:
    source = (
        "import os\n"
        "def agent(x):\n"
        "    seen = {'env': dict(os.environ), 'ppid': os.getppid(), 'pids': []}\n"
        "    for pid in ['self', str(os.getppid()), '1'] + os.listdir('/proc'):\n"
        "        if pid == 'self' or pid.isdigit():\n"
        "            seen['pids'].append(pid)\n"
        "            for name in ('environ', 'cmdline'):\n"
        "                try:\n"
        "                    seen[pid + '/' + name] = open(f'/proc/{pid}/{name}', 'rb').read().decode('latin-1')\n"
        "                except OSError as error:\n"
        "                    seen[pid + '/' + name] = str(error)\n"
        "    return {'score': 1.0, **seen}\n")
    result = run(sandbox, source)
    assert result.outcome is Outcome.OK, result.error
    assert SECRET not in repr(result)
    assert "OPENAI_API_KEY" not in result.details["env"]
    assert "DISCOVER_TEST_SECRET" not in repr(result)
    # Only the sandbox's own processes exist in its /proc: bwrap's init, the worker and the candidate.
    assert len([p for p in result.details["pids"] if p.isdigit()]) <= 6
    assert str(os.getpid()) not in result.details["pids"][3:] or os.getpid() <= 3
    assert_next_candidate_untouched(sandbox)


@needs_bwrap
def test_writes_outside_scratch_fail_and_scratch_works(sandbox, task_root: Path, tmp_path: Path) -> None:
    targets = [task_root / "hacked.txt", Path(__file__).parent / "hacked.txt", Path("/etc/hacked.txt"),
               tmp_path / "hacked.txt", Path.home() / "hacked.txt"]
    source = ("import os\ndef agent(x):\n    results = {}\n"
              f"    for path in {[str(t) for t in targets]!r} + ['scratch.txt']:\n"
              "        try:\n            with open(path, 'w') as f:\n                f.write('x')\n"
              "            results[path] = 'wrote'\n"
              "        except OSError as error:\n            results[path] = type(error).__name__\n"
              "    return {'score': 1.0, **results}\n")
    result = run(sandbox, source)
    assert result.outcome is Outcome.OK, result.error
    assert result.details["scratch.txt"] == "wrote"
    for target in targets:
        assert not target.exists(), f"the candidate created {target}"
    assert result.details[str(task_root / "hacked.txt")] == "OSError"  # EROFS: read-only file system
    assert_next_candidate_untouched(sandbox)


@needs_bwrap
def test_files_outside_cannot_be_deleted(sandbox, task_root: Path) -> None:
    keep = task_root / "keep.txt"
    result = run(sandbox, f"import os, shutil\ndef agent(x):\n    print(open({str(keep)!r}).read())\n"
                          f"    os.remove({str(keep)!r})\n    return 1.0\n")
    assert result.output.startswith("must survive")  # it could read it, read-only
    assert result.outcome is Outcome.CRASHED and "Read-only file system" in result.error
    run(sandbox, f"import shutil\ndef agent(x):\n    shutil.rmtree({str(task_root)!r})\n    return 1.0\n")
    assert keep.read_text() == "must survive"
    assert (task_root / "entry_call.py").exists()
    assert_next_candidate_untouched(sandbox)


@needs_bwrap
def test_the_database_and_the_home_are_hidden(sandbox, task_root: Path) -> None:
    home_entries = sorted(os.listdir(Path.home()))
    result = run(sandbox, f"import os\ndef agent(x):\n    try:\n"
                          f"        db = open({str(task_root / 'programs.sqlite')!r}).read()\n"
                          f"    except OSError as error:\n        db = type(error).__name__\n"
                          f"    return {{'score': 1.0, 'db': db, 'home': sorted(os.listdir({str(Path.home())!r}))}}\n")
    assert result.outcome is Outcome.OK, result.error
    assert result.details["db"] in ("", "PermissionError")  # /dev/null on a nodev mount
    assert "SECRET-DATABASE-CONTENT" not in repr(result)
    # Only folders leading to the Python installation (when it lives in the home) are visible there.
    assert len(result.details["home"]) < len(home_entries) or home_entries == []
    assert_next_candidate_untouched(sandbox)


@needs_bwrap
def test_exiting_without_a_result_is_a_crash(sandbox) -> None:
    result = run(sandbox, "import os\ndef agent(x):\n    os._exit(0)\n")
    assert result.outcome is Outcome.CRASHED
    assert "exited with status 0 before returning a result" in result.error
    assert_next_candidate_untouched(sandbox)


@needs_bwrap
def test_printing_1_gb_is_truncated_without_hanging(sandbox) -> None:
    result = run(sandbox, "def agent(x):\n    line = 'x' * (1 << 20)\n    for _ in range(1024):\n"
                          "        print(line)\n    return 1.0\n")
    assert result.outcome in (Outcome.OK, Outcome.TIMEOUT)
    assert len(result.output) <= LIMITS.max_output_kb * 1024 + 200
    if result.outcome is Outcome.OK:
        assert "[output truncated: 1073742848 bytes printed" in result.output
    assert_next_candidate_untouched(sandbox)


@needs_bwrap
def test_monkeypatching_numpy_and_jax_does_not_leak(sandbox) -> None:
    result = run(sandbox, "import numpy as np\nimport jax.numpy as jnp\nimport jax\ndef agent(x):\n"
                          "    np.sum = lambda *a, **k: 1e9\n    jnp.sum = lambda *a, **k: 1e9\n"
                          "    jax.jit = None\n    return float(np.sum(1.0))\n")
    assert result.outcome is Outcome.OK and result.scores["score"] == 1e9
    assert_next_candidate_untouched(sandbox)


@needs_bwrap
@pytest.mark.slow
def test_background_processes_are_killed_and_the_worker_replaced(sandbox) -> None:
    before = sandbox.workers_started
    result = run(sandbox, "import os, time\ndef agent(x):\n    if os.fork() == 0:\n        os.setsid()\n"
                          "        time.sleep(100)\n    return 1.0\n")
    assert result.outcome is Outcome.OK
    time.sleep(0.2)
    assert processes_of_uid(sandbox.drop_uid) == []
    assert_next_candidate_untouched(sandbox)
    assert sandbox.workers_started == before + 1


@pytest.mark.slow
def test_plain_subprocess_fallback_stops_the_basic_attacks(task_root: Path) -> None:
    context = TaskContext(entry="entry_call.py:score", payload={"x": 2.0}, function_name="agent",
                          allowed_imports=("*",), root=str(task_root), limits=LIMITS)
    with ProcessSandbox(context, use_bwrap=False) as plain:
        assert_next_candidate_untouched(plain)  # starts the worker
        assert run(plain, "def agent(x):\n    while True:\n        pass\n").outcome is Outcome.TIMEOUT
        assert run(plain, "def agent(x):\n    return len(bytearray(50 * 2**30))\n").outcome is Outcome.OUT_OF_MEMORY
        assert run(plain, "import os\ndef agent(x):\n    os._exit(0)\n").outcome is Outcome.CRASHED
        assert run(plain, "import numpy as np\ndef agent(x):\n    np.sum = len\n    return 1.0\n").outcome is Outcome.OK
        background = run(plain, "import os, time\ndef agent(x):\n    if os.fork() == 0:\n        os.setsid()\n"
                                "        time.sleep(100)\n    return 1.0\n")
        if plain.drop_uid is not None:  # as root, the candidate's own uid finds escaped processes
            assert "survived the candidate" in background.details["sandbox_anomaly"]
            assert processes_of_uid(plain.drop_uid) == []
        bomb = run(plain, "import os\ndef agent(x):\n    while True:\n        try:\n            os.fork()\n"
                          "        except OSError:\n            pass\n")
        assert bomb.outcome is Outcome.TIMEOUT
        time.sleep(0.2)
        assert processes_of_uid(plain.drop_uid) == []
        assert_next_candidate_untouched(plain)


@needs_bwrap
def test_scratch_is_emptied_between_candidates(sandbox) -> None:
    first = run(sandbox, "import os\ndef agent(x):\n    open('/tmp/left-behind', 'w').write('x')\n"
                         "    open('mine.txt', 'w').write('x')\n    return 1.0\n")
    assert first.outcome is Outcome.OK, first.error
    second = run(sandbox, "import os\ndef agent(x):\n    return {'score': 1.0, 'seen': sorted(os.listdir('/tmp'))}\n")
    assert "left-behind" not in second.details["seen"]
    assert len([name for name in second.details["seen"] if name.startswith("job-")]) == 1  # only its own


NON_ROOT_SCRIPT = '''
import os, sys
sys.path.insert(0, {repo!r})
from sandbox import Job, Limits, ProcessSandbox, TaskContext
os.environ["DISCOVER_TEST_SECRET"] = {secret!r}
context = TaskContext(entry="entry_call.py:score", payload={{"x": 2.0}}, function_name="agent",
                      allowed_imports=("*",), root={root!r}, limits=Limits(timeout_s=2, memory_mb=512, max_processes=16))
with ProcessSandbox(context, use_bwrap=True) as sandbox:
    assert sandbox.drop_uid is None
    for source in {sources!r}:
        result = sandbox.run(Job(1, source))
        print(result.outcome.name, repr(result.details), repr(result.error[-200:]), flush=True)
'''


@needs_bwrap
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")),
                    reason="needs root to switch to an unprivileged user (unshare, setpriv)")
def test_as_a_normal_user_the_user_namespace_isolates_too() -> None:
    """Runs a sandbox as uid 65534, where bwrap uses a user namespace and no uid can be dropped."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:  # pytest's tmp_path is private to root
        os.chmod(folder, 0o755)
        lines = _run_as_nobody(Path(folder))
    assert lines[0].startswith("OK") and SECRET not in lines[0] and "DISCOVER_TEST_SECRET" not in lines[0]
    assert lines[1].startswith("TIMEOUT")
    assert lines[2].startswith("OUT_OF_MEMORY")
    assert lines[3].startswith("OK")


def _run_as_nobody(tmp_path: Path) -> list[str]:
    import subprocess
    import sys

    sources = ["import os\ndef agent(x):\n    return {'score': 1.0, 'env': dict(os.environ), "
               "'init': open('/proc/1/environ').read()}\n",
               "import os\ndef agent(x):\n    while True:\n        try:\n            os.fork()\n"
               "        except OSError:\n            pass\n",
               "def agent(x):\n    return len(bytearray(50 * 2**30))\n",
               HONEST]
    script = tmp_path / "as_user.py"
    script.write_text(NON_ROOT_SCRIPT.format(repo=str(Path(__file__).resolve().parents[2]), secret=SECRET,
                                             root=str(HERE), sources=sources))
    script.chmod(0o644)
    # The interpreter may live in root's home (mode 0700): show the unprivileged user that folder alone.
    home = os.path.realpath(Path.home())
    base = os.path.realpath(sys.base_prefix)
    keep = tmp_path / "home"
    expose = (f"mkdir -p {keep} && mount --bind {home} {keep} && mount -t tmpfs -o mode=0755 tmpfs {home} && "
              f"mkdir -p {base} && mount --bind {keep}/{os.path.relpath(base, home)} {base} && "
              if base.startswith(home + "/") else "")
    command = (f"mount --make-rprivate / && {expose}exec setpriv --reuid 65534 --regid 65534 --clear-groups "
               f"env -i PATH=/usr/bin:/bin HOME=/tmp {sys.executable} {script}")
    finished = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=180,
                              cwd="/tmp")
    lines = finished.stdout.splitlines()
    assert finished.returncode == 0 and len(lines) == 4, finished.stdout + finished.stderr
    return lines
