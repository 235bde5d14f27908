"""A fresh clone under /tmp, installed in editable mode, scores the bandit seed under bubblewrap.

The sandbox mounts its own scratch over /tmp, so a clone there is visible to a worker only through what the
sandbox binds back (`isolation.needed_paths`). An editable install reaches the clone through an import hook,
not through sys.path, which is how every candidate once failed with "No module named 'engine'".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
import yaml

from sandbox.isolation import find_bwrap

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(find_bwrap() is None, reason="needs bubblewrap (bwrap)")
@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_a_fresh_clone_under_tmp_scores_the_bandit_seed() -> None:
    clone = Path(tempfile.mkdtemp(prefix="discover-clone-", dir="/tmp"))
    try:
        clone.chmod(0o755)  # as `git clone` makes it: readable by the candidates' uid
        _copy_tracked_files(REPO, clone)
        python = _venv_reusing_this_environment(clone / ".venv")
        # Build isolation, as `pip install -e .` does: this environment's setuptools may be too old to build an
        # editable wheel (or missing, as in Python 3.12 venvs). --no-deps: the dependencies come from here.
        install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(clone)],
                                 capture_output=True, text=True, timeout=600, cwd="/")
        assert install.returncode == 0, install.stdout + install.stderr
        # From / the clone is on no one's sys.path: `engine` is found through the editable install alone.
        where = subprocess.run([python, "-c", "import engine; print(engine.__file__)"],
                               capture_output=True, text=True, timeout=120, cwd="/")
        assert Path(where.stdout.strip()).resolve() == (clone / "engine" / "__init__.py").resolve(), where.stderr

        task = clone / "tasks" / "bandit" / "task.yaml"
        evaluated = subprocess.run([python, "-m", "engine.cli", "eval", str(task), str(task.parent / "seed.py"),
                                    "--json"], capture_output=True, text=True, timeout=900, cwd="/")
        assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
        result = json.loads(evaluated.stdout)
        assert result["outcome"] == "OK", result["error"]
        assert result["score"] == pytest.approx(yaml.safe_load(task.read_text())["seed_score"], abs=1e-4)
    finally:
        shutil.rmtree(clone, ignore_errors=True)


def _copy_tracked_files(repo: Path, clone: Path) -> None:
    """Copies the files git tracks in `repo`, as they are in its working tree, into `clone`."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    for name in filter(None, listed.split(b"\0")):
        source = repo / os.fsdecode(name)
        if source.is_file():  # a tracked file deleted in the working tree stays out
            target = clone / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _venv_reusing_this_environment(venv: Path) -> str:
    """Makes a virtual environment that imports the installed dependencies from this one, without copying them.

    A .pth file adds this environment's site-packages to the new one's sys.path, after its own; .pth files in
    there are not run, so this environment's own editable install of the project does not come along.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site_packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    Path(site_packages, "_this_environment.pth").write_text("".join(f"{path}\n" for path in ours))
    return python
