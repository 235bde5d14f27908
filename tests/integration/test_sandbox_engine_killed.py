"""What a killed engine leaves of its sandbox: no worker, no candidate process, no scratch folder.

Each test starts a real engine process that opens a ProcessSandbox and runs a job, then kills it with SIGKILL
(as `kill -9` does, or a second Ctrl-C, which exits at once) and looks in /proc and /tmp for what is left.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from sandbox.isolation import find_bwrap

REPO = Path(__file__).resolve().parents[2]
ENTRY_ROOT = REPO / "tests" / "unit" / "sandbox"

ENGINE = '''
import sys, time
sys.path.insert(0, {repo!r})
from sandbox import Job, Limits, ProcessSandbox, TaskContext
context = TaskContext(entry="entry_call.py:score", payload={{"x": 2.0}}, function_name="agent",
                      allowed_imports=("*",), root={root!r},
                      limits=Limits(timeout_s=120, memory_mb=512, max_processes=16))
sandbox = ProcessSandbox(context, use_bwrap={use_bwrap!r}, preload=())
first = sandbox.run(Job(1, "import os\\ndef agent(x):\\n    return {{'score': x, 'folder': os.getcwd()}}\\n"))
print(first.outcome.name, first.details["folder"], sandbox.drop_uid, flush=True)
sandbox.run(Job(2, {second!r}))
time.sleep(600)  # the worker waits for its next job
'''

# Names itself (what /proc/<pid>/comm shows, at most 15 characters), forks a copy of itself and sleeps.
SLEEPER = ("import ctypes, os, time\ndef agent(x):\n    os.fork()\n"
           "    ctypes.CDLL(None).prctl(15, {name!r}, 0, 0, 0)\n    time.sleep(60)\n    return x\n")
IDLE = "def agent(x):\n    return x\n"


class Engine:
    """An engine process with one sandbox; `line` is what it printed after its first job."""

    def __init__(self, tmp_path: Path, use_bwrap: bool, second_source: str) -> None:
        script = tmp_path / "engine.py"
        script.write_text(ENGINE.format(repo=str(REPO), root=str(ENTRY_ROOT), use_bwrap=use_bwrap,
                                        second=second_source))
        self.process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
        ready, _, _ = select.select([self.process.stdout], [], [], 120)
        self.line = self.process.stdout.readline() if ready else ""
        outcome, self.folder, uid = (self.line.split() + ["", "", ""])[:3]
        if outcome != "OK":
            self.kill()
            pytest.fail(f"the engine's first job did not end OK:\n{self.line}{self.rest}")
        self.drop_uid = None if uid == "None" else int(uid)

    def kill(self) -> None:
        """Kills the engine with SIGKILL; `rest` is what it printed after `line`."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.rest = self.process.stdout.read()
        self.process.stdout.close()


def test_the_scratch_folder_goes_with_a_killed_engine(tmp_path: Path) -> None:
    engine = Engine(tmp_path, use_bwrap=False, second_source=IDLE)
    scratch = Path(engine.folder).parent  # the candidate ran in <scratch>/job-<id>-<pid>
    assert scratch.name.startswith("discover-sandbox-") and scratch.is_dir()
    engine.kill()
    assert _wait_until(lambda: not scratch.exists()), f"{scratch} outlived the engine"


@pytest.mark.parametrize("use_bwrap", [
    pytest.param(True, marks=pytest.mark.skipif(find_bwrap() is None, reason="needs bubblewrap (bwrap)")), False],
    ids=["bwrap", "plain"])
def test_a_running_candidate_dies_with_a_killed_engine(tmp_path: Path, use_bwrap: bool) -> None:
    name = "p" + uuid.uuid4().hex[:14]
    engine = Engine(tmp_path, use_bwrap=use_bwrap, second_source=SLEEPER.format(name=name.encode()))
    assert _wait_until(lambda: len(_named(name)) == 2), "the candidate and its copy did not start"
    sandbox = _descendants(engine.process.pid)  # bwrap, the worker, the candidate and its copy
    assert set(_named(name)) <= set(sandbox)
    engine.kill()
    assert _wait_until(lambda: not [p for p in sandbox if _alive(p, sandbox[p])]), (
        f"still running after the engine was killed: {[p for p in sandbox if _alive(p, sandbox[p])]}")
    assert _named(name) == {}
    if engine.drop_uid is not None:
        assert _wait_until(lambda: not _of_uid(engine.drop_uid))


# ------------------------------------------------------------------------------------------------ /proc
def _wait_until(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _processes() -> dict[int, list[str]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            found[int(entry)] = fields
    return found


def _alive(pid: int, start_time: str) -> bool:
    """Whether the process `pid` that started at `start_time` (clock ticks after boot) still runs (not a zombie)."""
    fields = _stat(pid)
    return fields is not None and fields[19] == start_time and fields[0] not in ("Z", "X")


def _descendants(root: int) -> dict[int, str]:
    """Returns {pid: start time} of every live process below `root`."""
    processes = _processes()
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, fields in processes.items():
            if int(fields[1]) == parent and pid not in found:
                found[pid] = fields[19]
                frontier.append(pid)
    return found


def _named(name: str) -> dict[int, str]:
    """Returns {pid: start time} of the live processes whose /proc/<pid>/comm is `name`."""
    found = {}
    for pid, fields in _processes().items():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm == name and fields[0] not in ("Z", "X"):
            found[pid] = fields[19]
    return found


def _of_uid(uid: int) -> list[int]:
    found = []
    for pid, fields in _processes().items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        real_uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
        if int(real_uid) == uid and fields[0] not in ("Z", "X"):
            found.append(pid)
    return found
