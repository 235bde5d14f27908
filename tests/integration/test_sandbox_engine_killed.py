"""What a killed engine leaves of its sandbox: no scratch folder.

Each test starts a real engine process that opens a ProcessSandbox and runs a job, then kills it with SIGKILL
(as `kill -9` does, or a second Ctrl-C, which exits at once) and looks for what is left.
"""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def _wait_until(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
