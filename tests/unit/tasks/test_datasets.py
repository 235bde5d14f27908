"""The dataset registry: hashes verified from the mirror, clear errors for corrupt and missing files, the cache,
and the download path (against a loopback HTTP server, never the network)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.data import DATASETS, get_dataset
from engine.task.datasets import DataFile, Dataset, DatasetError, fetch, fetch_all, sha256_of

ROITMAN = "roitman-shadlen-rt"


def test_every_registered_file_is_in_the_mirror_with_its_registered_hash(data_mirror: Path) -> None:
    n_files = 0
    for dataset in DATASETS.values():
        paths = fetch_all(dataset)
        for name, path in paths.items():
            assert path == data_mirror / dataset.name / name
            assert hashlib.sha256(path.read_bytes()).hexdigest() == dataset.file(name).sha256
            n_files += 1
    assert n_files == 22 + 13 + 2 + 1  # ibw waves, Goris .mat files, two HDDM tables, the Roitman table


def test_registered_origins_are_raw_files_at_pinned_commits() -> None:
    for dataset in DATASETS.values():
        assert dataset.licence and dataset.citation
        for data_file in dataset.files:
            assert re.fullmatch(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+", data_file.url)
            assert data_file.url.rsplit("/", 1)[1] == data_file.name.rsplit("/", 1)[-1]
            # Convenience files derived for the mirror have no public origin and are not registered.
            assert not data_file.name.endswith((".npz", ".csv.gz")), data_file.name


def test_the_unlicensed_mouse_data_is_not_registered() -> None:
    assert "mouse-2abt-neufeld" not in DATASETS
    with pytest.raises(DatasetError, match="No dataset 'mouse-2abt-neufeld' is registered. Registered: bbp-rat"):
        get_dataset("mouse-2abt-neufeld")


def _mirror_with(tmp_path: Path, mirror: Path, dataset: str, name: str) -> Path:
    copy = tmp_path / "mirror"
    (copy / dataset / name).parent.mkdir(parents=True)
    shutil.copyfile(mirror / dataset / name, copy / dataset / name)
    return copy


def test_a_corrupt_mirror_file_is_an_error_naming_file_path_and_hashes(
    data_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = _mirror_with(tmp_path, data_mirror, ROITMAN, "roitman_rts.csv")
    corrupt = copy / ROITMAN / "roitman_rts.csv"
    content = bytearray(corrupt.read_bytes())
    content[100] ^= 0x01
    corrupt.write_bytes(bytes(content))
    monkeypatch.setenv("DISCOVER_DATA_MIRROR", str(copy))
    dataset = get_dataset(ROITMAN)
    with pytest.raises(DatasetError) as error:
        fetch(dataset, "roitman_rts.csv")
    message = str(error.value)
    assert f"roitman-shadlen-rt/roitman_rts.csv in the mirror (DISCOVER_DATA_MIRROR) at {corrupt} is corrupt" in message
    assert hashlib.sha256(bytes(content)).hexdigest() in message
    assert f"expected {dataset.file('roitman_rts.csv').sha256}" in message
    assert f"Replace it with the unchanged upstream file from {dataset.file('roitman_rts.csv').url}" in message


def test_a_missing_file_is_an_error_listing_every_place_looked(
    data_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_mirror = tmp_path / "empty"
    empty_mirror.mkdir()
    monkeypatch.setenv("DISCOVER_DATA_MIRROR", str(empty_mirror))
    dataset = get_dataset("bbp-rat-cortex-ccamp")
    name = "raw_ibw/B6/B6_Ch3_IDRest_181.ibw"
    with pytest.raises(DatasetError) as error:
        dataset.path(name)
    message = str(error.value)
    assert f"bbp-rat-cortex-ccamp/{name} (sha256 {dataset.file(name).sha256}) is not available. Looked in:" in message
    assert f"mirror (DISCOVER_DATA_MIRROR): {empty_mirror / 'bbp-rat-cortex-ccamp' / name}: not found" in message
    assert f"cache: {tmp_path / 'cache' / 'bbp-rat-cortex-ccamp' / name}: not found" in message
    assert f"network: {dataset.file(name).url}: not tried, because DISCOVER_DATA_MIRROR is set" in message
    assert "set DISCOVER_DATA_MIRROR=<mirror>" in message and "or allow the network" in message


def test_a_mirror_directory_that_does_not_exist_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCOVER_DATA_MIRROR", str(tmp_path / "typo"))
    monkeypatch.setenv("DISCOVER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match=r"\(the mirror directory .*typo does not exist\)"):
        fetch(get_dataset(ROITMAN), "roitman_rts.csv")


def test_without_a_mirror_a_verified_cache_copy_is_used_and_a_corrupt_one_is_an_error_offline(
    data_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISCOVER_DATA_MIRROR")
    cache_file = tmp_path / "cache" / ROITMAN / "roitman_rts.csv"
    cache_file.parent.mkdir(parents=True)
    shutil.copyfile(data_mirror / ROITMAN / "roitman_rts.csv", cache_file)
    assert fetch(get_dataset(ROITMAN), "roitman_rts.csv") == cache_file

    cache_file.write_bytes(cache_file.read_bytes()[:-1])
    with pytest.raises(DatasetError, match=r"in the cache at .*roitman_rts.csv is corrupt: .* Delete it"):
        fetch(get_dataset(ROITMAN), "roitman_rts.csv")

    cache_file.unlink()
    with pytest.raises(DatasetError, match="network: https://raw.githubusercontent.com/mwshinn/PyDDM/.*: not tried, "
                       "because DISCOVER_OFFLINE is set"):
        fetch(get_dataset(ROITMAN), "roitman_rts.csv")


@pytest.fixture
def loopback_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving tmp_path/"served"; yields (base URL, served folder)."""
    served = tmp_path / "served"
    served.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def test_without_mirror_or_cache_the_file_is_downloaded_verified_and_cached(
    loopback_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, served = loopback_server
    (served / "trials.csv").write_text("a,b\n1,2\n")
    good = DataFile("sub/trials.csv", f"{base_url}/trials.csv", hashlib.sha256(b"a,b\n1,2\n").hexdigest())
    wrong = DataFile("other.csv", f"{base_url}/trials.csv", "0" * 64)
    dataset = Dataset("toy", (good, wrong), licence="test", citation="test")
    monkeypatch.delenv("DISCOVER_DATA_MIRROR", raising=False)
    monkeypatch.delenv("DISCOVER_OFFLINE", raising=False)
    monkeypatch.setenv("DISCOVER_CACHE", str(tmp_path / "cache"))

    path = fetch(dataset, "sub/trials.csv")
    assert path == tmp_path / "cache" / "toy" / "sub" / "trials.csv"
    assert path.read_text() == "a,b\n1,2\n"
    (served / "trials.csv").unlink()  # a second fetch is served from the cache
    assert fetch(dataset, "sub/trials.csv") == path

    (served / "trials.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match=r"(?s)toy/other.csv .* is not available.*network: http://127.0.0.1:\d+/"
                       r"trials.csv: download failed: ValueError: .*hash"):
        fetch(dataset, "other.csv")


def test_registry_values_are_checked() -> None:
    with pytest.raises(DatasetError, match="must be a relative path"):
        DataFile("/etc/passwd", "https://x", "0" * 64)
    with pytest.raises(DatasetError, match="must be 64 lowercase hex digits"):
        DataFile("a.csv", "https://x", "ABC")
    twice = DataFile("a.csv", "https://x", "0" * 64)
    with pytest.raises(DatasetError, match="lists these files more than once: a.csv"):
        Dataset("toy", (twice, twice), licence="", citation="")
    with pytest.raises(DatasetError, match="has no file 'b.csv'. Registered files: a.csv"):
        Dataset("toy", (twice,), licence="", citation="").file("b.csv")


def test_sha256_of_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"\x00\x01" * 1000)
    assert sha256_of(path) == hashlib.sha256(b"\x00\x01" * 1000).hexdigest()
