"""A task's files import each other relatively, wherever the task's folder lies, in the engine and in the worker."""

from pathlib import Path

import pytest

from engine.task.spec import import_task_module
from sandbox.zygote import load_module

REPO = Path(__file__).resolve().parents[3]


def write_task(folder: Path, value: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "helpers.py").write_text(f"VALUE = {value}\n")
    (folder / "score.py").write_text("from .helpers import VALUE\n\ndef score():\n    return VALUE\n")
    return folder / "score.py"


@pytest.mark.parametrize("load", [import_task_module, lambda path: load_module(str(path))])
def test_relative_imports_work_from_any_folder_and_folders_of_one_name_do_not_collide(tmp_path, load):
    first = write_task(tmp_path / "a" / "mytask", 1)
    second = write_task(tmp_path / "b" / "mytask", 2)  # the same folder name elsewhere
    assert load(first).score() == 1
    assert load(second).score() == 2
    assert load(first) is load(first)  # imported once per path


def test_no_bundled_task_needs_an_import_fallback():
    """Task files import their siblings relatively; none tries the package path first and falls back on ImportError."""
    offenders = [str(path.relative_to(REPO)) for path in sorted((REPO / "tasks").glob("*/*.py"))
                 if "except ImportError" in path.read_text()]
    assert offenders == []


@pytest.mark.parametrize("name", ["score.py", "verify.py"])
def test_the_guide_shows_the_example_tasks_files_as_they_are(name):
    """docs/tasks.md's score and verify listings are docs/example_task's files (which test_new_task runs)."""
    body = (REPO / "docs" / "example_task" / name).read_text().split('"""', 2)[2].lstrip("\n")
    assert body in (REPO / "docs" / "tasks.md").read_text()
