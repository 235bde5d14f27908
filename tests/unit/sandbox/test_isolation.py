"""The bubblewrap command line and the worker environment, checked as data (no process is started)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sandbox import isolation


def test_the_environment_is_rebuilt_without_secrets(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    env = isolation.sandbox_env({"EXTRA": "1"})
    assert "OPENAI_API_KEY" not in env
    assert env["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"
    assert env["HOME"] == env["TMPDIR"] == isolation.SANDBOX_SCRATCH
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["EXTRA"] == "1"
    assert "sk-secret" not in repr(env)


def test_command_isolates_namespaces_and_clears_the_environment(tmp_path: Path) -> None:
    command = isolation.bwrap_command("/usr/bin/bwrap", ["python", "worker.py"], {"PATH": "/usr/bin"},
                                      task_root=str(tmp_path), as_root=True)
    for flag in ("--unshare-pid", "--unshare-net", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in command
    assert command[-3:] == ["--", "python", "worker.py"]
    assert command[command.index("--cap-drop") + 1] == "ALL"
    as_user = isolation.bwrap_command("/usr/bin/bwrap", ["python"], {}, task_root=str(tmp_path), as_root=False)
    assert "--unshare-user" in as_user and "--cap-add" not in as_user


def test_hidden_paths_are_covered_and_needed_paths_reopened(tmp_path: Path) -> None:
    root = tmp_path / "task"
    root.mkdir()
    database = root / "programs.sqlite"
    database.write_text("")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    command = " ".join(isolation.bwrap_command("bwrap", ["python"], {}, task_root=str(root),
                                               hidden_paths=[str(database), str(outputs)], as_root=True))
    assert f"--ro-bind /dev/null {database}" in command
    assert f"--tmpfs {outputs}" in command
    assert "--perms 1777 --tmpfs /tmp" in command
    # The task root lives under /tmp here, which the scratch tmpfs covers: it is bound back read-only, after it.
    assert f"--ro-bind {root} {root}" in command
    assert command.index("--tmpfs /tmp") < command.index(f"--ro-bind {root} {root}")
    assert f"--perms 0755 --dir {root.parent}" in command
    assert command.index(f"--ro-bind {root} {root}") < command.index(f"--ro-bind /dev/null {database}")
    home = str(Path.home())
    if os.path.isdir(home):
        assert f"--tmpfs {os.path.realpath(home)}" in command


def test_the_python_installation_stays_readable() -> None:
    needed = isolation.needed_paths(".")
    assert os.path.realpath(sys.base_prefix) in needed
    assert str(Path(isolation.__file__).parent) in needed


def test_uids_differ_between_sandboxes() -> None:
    uids = {isolation.allocate_uid() for _ in range(5)}
    assert len(uids) == 5 and min(uids) >= 200_000 and max(uids) < 2**32 - 1
