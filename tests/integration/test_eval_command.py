"""`discover eval` shows what the sandbox saw besides the outcome: a candidate that leaves a process running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.isolation import find_bwrap

SEED = 'def model(params, x):\n    PARAMS = {"a": (0.0, 1.0)}\n    return x\n'
SCORE = "def score(candidate, train, heldout, seed=0):\n    return {'score': float(candidate({'a': 0.5}, heldout['x']))}\n"
DATA = "def load():\n    return {'train': {'x': 1.0}, 'selection': {'x': 1.0}, 'test': {'x': 1.0}}\n"
TASK = """name: toy
version: 1
summary: A score that is the candidate's return value.
evolve: seed.py:model
inputs: {x: float32}
score: score.py:score
data: data.py:load
limits: {timeout_s: 20, memory_mb: 1024}
allowed_imports: ["*"]        # the static check off: this candidate means to fork
"""
LEAVES_A_PROCESS = """import os, time

if os.fork() == 0:
    os.setsid()
    time.sleep(100)
    os._exit(0)


def model(params, x):
    PARAMS = {"a": (0.0, 1.0)}
    return x
"""


def discover_eval(task_yaml: Path, candidate: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", "eval", str(task_yaml), str(candidate), *flags],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(find_bwrap() is None, reason="needs bubblewrap (bwrap): without it stray processes are not looked for")
def test_eval_reports_processes_a_candidate_left_behind(tmp_path: Path):
    for name, text in (("seed.py", SEED), ("score.py", SCORE), ("data.py", DATA), ("task.yaml", TASK),
                       ("leaves.py", LEAVES_A_PROCESS)):
        (tmp_path / name).write_text(text)
    as_json = json.loads(discover_eval(tmp_path / "task.yaml", tmp_path / "leaves.py", "--json").stdout)
    assert as_json["outcome"] == "OK" and as_json["score"] == 1.0
    assert as_json["sandbox_anomaly"] == "1 background process(es) survived the candidate and were killed"
    plain = discover_eval(tmp_path / "task.yaml", tmp_path / "leaves.py")
    assert "sandbox: 1 background process(es) survived the candidate and were killed" in plain.stdout

    clean = json.loads(discover_eval(tmp_path / "task.yaml", tmp_path / "seed.py", "--json").stdout)
    assert clean["outcome"] == "OK" and clean["sandbox_anomaly"] == ""
    assert "sandbox:" not in discover_eval(tmp_path / "task.yaml", tmp_path / "seed.py").stdout
