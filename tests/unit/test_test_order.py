"""tests/conftest.py's RUN_FIRST names files that exist: a renamed file would silently lose its early start."""

from __future__ import annotations

from tests.conftest import REPO, RUN_FIRST


def test_every_file_run_first_exists():
    assert [path for path in RUN_FIRST if not (REPO / path).is_file()] == []
