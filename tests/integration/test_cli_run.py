"""End to end: `discover run` on a small bandit task, then every inspection command on its database."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def discover(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(f"discover {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_run_then_best_show_stats_eval(small_bandit_run, tmp_path: Path):
    small_bandit_task, db, summary = small_bandit_run
    assert summary["db"] == str(db) and db.exists()
    assert summary["evaluations"] == 16
    assert summary["seed_score"] > 0.5 and summary["best_score"] >= summary["seed_score"]

    best = json.loads(discover("best", str(db), "--n", "5", "--json").stdout)
    assert best and {"id", "score", "island", "outcome"} <= set(best[0])
    assert best[0]["score"] == pytest.approx(summary["best_score"])
    assert [b["score"] for b in best] == sorted((b["score"] for b in best), reverse=True)

    shown = json.loads(discover("show", str(db), str(best[0]["id"]), "--json").stdout)
    assert "def agent" in shown["code"] and shown["fitted_params"] and shown["outcome"] == "OK"

    stats = json.loads(discover("stats", str(db), "--json").stdout)
    assert stats["evaluations"] == 16
    assert sum(stats["outcomes"].values()) >= 16
    assert stats["seed_score"] == pytest.approx(summary["seed_score"])
    assert stats["best_score"] == pytest.approx(summary["best_score"])
    assert stats["evaluations_per_s"] > 0

    # The mutator names the one program it mutated as the parent (not every shot of its prompt).
    from islands import ProgramDatabase

    readonly = ProgramDatabase.open_readonly(db)
    try:
        programs = list(readonly.all_programs())
    finally:
        readonly.close()
    ids = {p.id for p in programs}
    mutants = [p for p in programs if p.proposer == "mutator" and p.source.strip()]
    assert mutants and all(len(p.parent_ids) == 1 and p.parent_ids[0] in ids for p in mutants)

    seed_file = small_bandit_task.parent / "seed.py"
    evaluated = json.loads(discover("eval", str(small_bandit_task), str(seed_file), "--json").stdout)
    assert evaluated["outcome"] == "OK" and evaluated["error"] == ""
    assert evaluated["score"] == pytest.approx(summary["seed_score"], abs=1e-4)
    assert evaluated["fitted_params"].keys() == {"all"} and set(evaluated["fitted_params"]["all"]) == {"alpha", "beta"}
    assert {"compile_s", "fit_s", "wall"} <= set(evaluated["timings"])

    # The same database refuses another task, with a message saying what differs.
    import shutil

    shutil.copytree(small_bandit_task.parent, tmp_path / "other")
    other = tmp_path / "other" / "task.yaml"
    other.write_text(other.read_text().replace("name: bandit", "name: bandit_other"))
    refused = discover("run", str(other), "--db", str(db), "--max-evals", "17", check=False)
    assert refused.returncode == 1
    assert "bandit" in refused.stderr and "bandit_other" in refused.stderr


def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(small_bandit_task: Path, tmp_path: Path):
    db = tmp_path / "run.db"
    command = [sys.executable, "-m", "engine.cli", "run", str(small_bandit_task), "--db", str(db),
               "--max-evals", "20", "--workers", "2", "--quiet"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    stored = 0
    while time.monotonic() < deadline and stored < 8:
        time.sleep(0.5)
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
                    stored = connection.execute("select count(*) from programs").fetchone()[0]
            except sqlite3.OperationalError:
                pass
        assert process.poll() is None, process.stderr.read().decode()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with sqlite3.connect(db) as connection:
        before = connection.execute("select id, source from programs order by id").fetchall()
    assert len(before) >= 8

    discover(*command[3:], timeout=600)
    with sqlite3.connect(db) as connection:
        after = connection.execute("select id, source from programs order by id").fetchall()
    assert after[: len(before)] == before  # nothing stored before the kill was lost or changed
    ids = [row[0] for row in after]
    assert len(ids) == len(set(ids))
    stats = json.loads(discover("stats", str(db), "--json").stdout)
    assert stats["evaluations"] == 20  # the budget counts what was done before the kill
    seeds = [p for p in json.loads(discover("best", str(db), "--n", "1000", "--json").stdout) if p["proposer"] == "seed"]
    assert len(seeds) == 1


def test_diff_lineage_and_export_on_a_real_run(small_bandit_run, tmp_path: Path):
    _, db, summary = small_bandit_run
    best_id = summary["best_id"]
    seed_id = [p for p in json.loads(discover("best", str(db), "--n", "1000", "--json").stdout) if p["proposer"] == "seed"][0]["id"]

    steps = json.loads(discover("lineage", str(db), str(best_id), "--json").stdout)
    assert steps[0]["id"] == best_id and steps[-1]["id"] == seed_id
    assert all(step["parent_ids"] for step in steps[:-1]) and steps[-1]["parent_ids"] == []

    diff = discover("diff", str(db), str(seed_id), str(best_id)).stdout
    assert f"program {seed_id}" in diff and f"program {best_id}" in diff and "score" in diff

    model = tmp_path / "model.py"
    discover("export", str(db), str(best_id), "-o", str(model))
    # The exported file runs in a fresh interpreter that cannot import the engine.
    check = subprocess.run(
        [sys.executable, "-I", "-c",
         "import runpy, sys; sys.modules.pop('engine', None); "
         "import builtins; real = builtins.__import__; "
         "builtins.__import__ = lambda n, *a, **k: (_ for _ in ()).throw(ImportError(n)) if n.split('.')[0] in ('engine', 'islands', 'sandbox', 'tasks') else real(n, *a, **k); "
         f"m = runpy.run_path({str(model)!r}); import jax.numpy as jnp; "
         "logits, state = m['agent_fitted'](jnp.zeros(8), jnp.int32(0), jnp.float32(1.0)); print(logits.shape, state.shape)"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr
    assert "(2,) (8,)" in check.stdout


def test_sigint_stops_cleanly_commits_and_prints_the_resume_command(small_bandit_task: Path, tmp_path: Path):
    db = tmp_path / "run.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(small_bandit_task), "--db", str(db), "--max-evals", "500",
         "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    stored, deadline = 0, time.monotonic() + 300
    while stored < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
                    stored = connection.execute("select count(*) from programs").fetchone()[0]
            except sqlite3.OperationalError:
                pass
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "stopped: interrupted" in stdout
    assert f"resume with: discover run {small_bandit_task} --db {db}" in stdout
    with sqlite3.connect(db) as connection:
        assert connection.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert connection.execute("select count(*) from programs").fetchone()[0] >= 4


def test_pareto_front_and_config_show(small_bandit_run, tmp_path: Path):
    task, db, _ = small_bandit_run
    front = json.loads(discover("best", str(db), "--pareto", "--json").stdout)
    assert front and all(p["outcome"] == "OK" for p in front)
    # No program on the front is beaten on score by a simpler or equally complex one on the front.
    for a in front:
        for b in front:
            if b["num_params"] <= a["num_params"] and b["ast_size"] <= a["ast_size"] and b["id"] != a["id"]:
                assert b["score"] <= a["score"]
    preset = tmp_path / "preset.yaml"
    preset.write_text("run: {max_evals: 7}\nsandbox: {num_workers: 3}\n")
    shown = discover("config", "show", str(task), "--config", str(preset), "--workers", "5").stdout
    assert "max_evals: 7" in shown and "num_workers: 5" in shown
    bad = tmp_path / "bad.yaml"
    bad.write_text("sandbox: {num_worker: 3}\n")
    refused = discover("config", "show", str(task), "--config", str(bad), check=False)
    assert refused.returncode == 1 and "sandbox.num_worker" in refused.stderr and "bad.yaml" in refused.stderr


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what a terminal acts on; newline and tab are fine


def test_show_and_export_never_pass_terminal_control_characters_on(small_bandit_run, tmp_path: Path):
    _, db, summary = small_bandit_run
    tampered = tmp_path / "tampered.db"
    shutil.copy(db, tampered)
    best_id = summary["best_id"]
    with sqlite3.connect(tampered) as connection:  # as a proposer's answer, or anyone with the file, could write it
        source = connection.execute("select source from programs where id = ?", (best_id,)).fetchone()[0]
        lines = source.split("\n")
        at = next(i for i, line in enumerate(lines) if "PARAMS = " in line) + 1
        lines[at:at] = ["    # \x1b[2J\x1b]0;title\x07 cleared the screen\r", '    LABEL = "\x1b[31mred\\\x1b\x9b"\r']
        evil = "\n".join(lines)
        connection.execute("update programs set source = ?, error = ?, proposer = ? where id = ?",
                           (evil, "over\rwritten \x1b[1A", "llm:\x1b[5m", best_id))
        seed_id = connection.execute("select id from programs where proposer = 'seed'").fetchone()[0]
        raw = connection.execute("select source from programs where id = ?", (seed_id,)).fetchone()[0]
        connection.execute("update programs set source = ? where id = ?",
                           (raw.replace("PARAMS = ", 'TAG = r"\x1b"\n    PARAMS = ', 1), seed_id))

    shown = discover("show", str(tampered), str(best_id))
    assert not CONTROL.search(shown.stdout), repr(shown.stdout)
    # CR LF line ends print as newlines; a lone CR, which would overwrite the line, as an escape.
    assert "# \\x1b[2J\\x1b]0;title\\x07 cleared the screen\n" in shown.stdout and "over\\x0dwritten" in shown.stdout
    assert json.loads(discover("show", str(tampered), str(best_id), "--json").stdout)["code"] == evil  # exact
    for command in (["best", str(tampered), "--n", "100"], ["lineage", str(tampered), str(best_id)],
                    ["diff", str(tampered), str(seed_id), str(best_id)]):
        assert not CONTROL.search(discover(*command).stdout), command

    exported = tmp_path / "model.py"
    discover("export", str(tampered), str(best_id), "-o", str(exported))
    text = exported.read_text()
    assert not CONTROL.search(text)
    assert '    LABEL = "\\x1b[31mred\\\\\\x1b\\x9b"\n' in text and "# \\x1b[2J\\x1b]0;title\\x07 cleared" in text
    namespace: dict = {}
    exec(compile(text, str(exported), "exec"), namespace)  # valid Python, and the string means what it meant
    with warnings.catch_warnings():  # the stored LABEL has "\\<ESC>", an unknown escape that Python warns about
        warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
        stored_tree = ast.parse(evil.replace("\r\n", "\n").replace("\r", "\n"))
    stored_label = next(n.value.value for n in ast.walk(stored_tree) if isinstance(n, ast.Assign)
                        and getattr(n.targets[0], "id", "") == "LABEL")
    exported_label = next(n.value.value for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Assign)
                          and getattr(n.targets[0], "id", "") == "LABEL")
    assert exported_label == stored_label == "\x1b[31mred\\\x1b\x9b"
    assert callable(namespace["agent_fitted"])

    refused = discover("export", str(tampered), str(seed_id), "-o", str(tmp_path / "seed.py"), check=False)
    assert refused.returncode == 1 and not (tmp_path / "seed.py").exists()
    assert refused.stderr.startswith(f"error: program {seed_id} has the control character \\x1b at line ")
    assert "outside comments and plain string literals" in refused.stderr and not CONTROL.search(refused.stderr)


@pytest.mark.parametrize("runner", ["ray", "local"])
def test_missing_bubblewrap_is_said_once_on_the_console_with_the_install_command(runner, small_bandit_task: Path,
                                                                                 tmp_path: Path):
    # A PATH holding only the interpreter's folder: the engine finds no bwrap, as on a machine without it.
    without_bwrap = {**os.environ, "PATH": str(Path(sys.executable).parent), "PYTHONUNBUFFERED": "1"}
    assert shutil.which("bwrap", path=without_bwrap["PATH"]) is None
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", str(small_bandit_task), "--db", str(tmp_path / "run.db"),
         "--max-evals", "1", "--workers", "1", "--runner", runner, "--json"],
        capture_output=True, text=True, timeout=600, env=without_bwrap,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["evaluations"] == 1  # --json output stays JSON: the warning is on stderr
    warnings_shown = [line for line in result.stderr.splitlines() if "bubblewrap" in line]
    assert len(warnings_shown) == 1, result.stderr
    assert warnings_shown[0].startswith("warning: bubblewrap ('bwrap') was not found")
    assert "apt-get install bubblewrap" in warnings_shown[0] and "read your files" in warnings_shown[0]
