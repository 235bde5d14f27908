"""Mistakes and broken environments end `discover` with one message (JSON under --json), never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


def discover(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs the real console entry (engine.cli.main) in a fresh interpreter."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=environment)


# Ray's own log lines ("2026-01-01 10:00:00,000\tWARNING ...") are Ray's, not the command's message.
RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(INFO|WARNING) ")


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str, status: int = 1) -> str:
    """Checks that the command failed with `status` and one line on stderr holding every fragment; returns it."""
    assert result.returncode == status, result.stdout + result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not RAY_LOG_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_a_value_that_is_not_a_number_is_one_line_naming_the_option(small_bandit_task: Path):
    result = discover("run", str(small_bandit_task), "--max-evals", "abc")
    line = assert_one_line_error(result, "--max-evals", "'abc'", "run --help", status=2)
    assert len(line) < 200
    assert result.stdout == ""

    as_json = discover("run", str(small_bandit_task), "--max-evals", "abc", "--json")
    assert as_json.returncode == 2 and as_json.stderr == ""
    assert set(json.loads(as_json.stdout)) == {"error"} and "'abc'" in json.loads(as_json.stdout)["error"]


def test_other_command_line_mistakes_are_one_line_too(tmp_path: Path):
    assert_one_line_error(discover("nosuch"), "No such command 'nosuch'", status=2)
    assert_one_line_error(discover("best"), "Missing argument", status=2)
    assert_one_line_error(discover("show", str(tmp_path / "x.db"), "seven"), "'seven'", status=2)


def test_ray_failing_to_start_is_one_line_and_json_under_json(small_bandit_task: Path, tmp_path: Path):
    # Ray keeps its sockets and logs under RAY_TMPDIR: one that does not exist makes the real ray.init fail.
    broken_ray = {"RAY_TMPDIR": str(tmp_path / "missing")}
    result = discover("run", str(small_bandit_task), "--db", str(tmp_path / "run.db"), "--max-evals", "1",
                      "--quiet", env=broken_ray)
    assert_one_line_error(result, "could not start a local Ray instance", "--runner local")

    as_json = discover("run", str(small_bandit_task), "--db", str(tmp_path / "run.db"), "--max-evals", "1",
                       "--json", env=broken_ray)
    assert as_json.returncode == 1, as_json.stdout + as_json.stderr
    assert "could not start a local Ray instance" in json.loads(as_json.stdout)["error"]
    assert "Traceback" not in as_json.stderr


def test_eval_of_a_candidate_that_is_not_utf8_names_the_file_and_the_byte(small_bandit_task: Path, tmp_path: Path):
    candidate = tmp_path / "latin1.py"
    candidate.write_bytes("def agent(params, state, choice, reward):\n    # café\n    return state\n".encode("cp1252"))
    line = assert_one_line_error(discover("eval", str(small_bandit_task), str(candidate)),
                                 str(candidate), "is not UTF-8 text", "0xe9", "save it as UTF-8")
    assert len(line) < 250

    as_json = discover("eval", str(small_bandit_task), str(candidate), "--json")
    assert as_json.returncode == 1 and "is not UTF-8 text" in json.loads(as_json.stdout)["error"]


def test_a_data_file_that_is_missing_is_one_sentence_naming_it(small_bandit_task: Path, tmp_path: Path):
    missing = tmp_path / "recordings" / "trials.npz"
    data_module = small_bandit_task.parent / "data.py"
    loader = f"\n\ndef load(**options):\n    return dict(np.load({str(missing)!r}))\n"
    data_module.write_text(data_module.read_text() + loader)  # replaces the module's own load
    for command in (["run", str(small_bandit_task), "--db", str(tmp_path / "run.db")],
                    ["eval", str(small_bandit_task), str(small_bandit_task.parent / "seed.py")]):
        line = assert_one_line_error(discover(*command), "could not read the data file", str(missing),
                                     "No such file or directory", "put the file there")
        assert line.count(". ") == 0
    assert not (tmp_path / "run.db").exists()  # it stopped before opening the database


def test_a_registry_file_that_is_missing_says_where_it_looked_without_a_traceback(repo: Path, tmp_path: Path):
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    result = discover("run", str(repo / "tasks" / "bandit" / "human.yaml"), "--db", str(tmp_path / "run.db"),
                      env={"DISCOVER_DATA_MIRROR": str(empty_mirror), "DISCOVER_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: hddm-cavanagh-rlddm/rlddm_data.csv") and "is not available" in result.stderr
    assert "put the unchanged upstream file at <mirror>/hddm-cavanagh-rlddm/rlddm_data.csv" in result.stderr


def test_a_second_run_through_a_symbolic_link_is_refused_like_one_on_the_same_path(small_bandit_task: Path,
                                                                                     tmp_path: Path):
    from islands import IslandsConfig, ProgramDatabase, RunMeta

    db, link = tmp_path / "run.db", tmp_path / "link.db"
    link.symlink_to(db)
    # This process stands in for the first run: it holds the database open for writing.
    with ProgramDatabase.open(db, IslandsConfig(), RunMeta("bandit", 1, "d" * 16, "agent")):
        same_path = assert_one_line_error(discover("run", str(small_bandit_task), "--db", str(db)))
        through_link = discover("run", str(small_bandit_task), "--db", str(link))
        line = assert_one_line_error(through_link, f"another process is writing to {link}")
    assert line.replace(str(link), str(db)) == same_path
    assert "resuming" not in through_link.stdout and "starting" not in through_link.stdout
