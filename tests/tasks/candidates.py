"""Building candidate modules from task files, the way the sandbox hands them to a task's score function."""

from __future__ import annotations

import types
from pathlib import Path

#: The offline data mirror beside the checkout (`../shared/data`), as `.ci/run` sets it.
MIRROR = Path(__file__).resolve().parents[3] / "shared" / "data"


def module_from_source(source: str, filename: str = "candidate.py") -> types.ModuleType:
    """Returns a module named "candidate" executed from `source`, with its source as `__source__`."""
    module = types.ModuleType("candidate")
    module.__source__ = source
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def module_from(path: Path) -> types.ModuleType:
    """Returns the candidate module of the file at `path`."""
    return module_from_source(path.read_text(), str(path))
