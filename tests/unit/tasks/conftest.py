"""Fixtures for the dataset registry and loader tests: the offline mirror beside the checkout, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

# <repo>/../shared/data: the mirror beside the checkout, and the copy of shared/ beside CI's clean clone.
MIRROR = Path(__file__).resolve().parents[3].parent / "shared" / "data"


@pytest.fixture
def data_mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Points DISCOVER_DATA_MIRROR at the shared mirror, the cache at an empty folder, and forbids the network."""
    if not MIRROR.is_dir():
        pytest.fail(f"the dataset mirror is expected at {MIRROR} (shared/data beside the repository); it is absent.")
    monkeypatch.setenv("DISCOVER_DATA_MIRROR", str(MIRROR))
    monkeypatch.setenv("DISCOVER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DISCOVER_OFFLINE", "1")
    return MIRROR
