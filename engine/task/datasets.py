"""Dataset files: where each comes from, how it is verified, and where it is found on this machine.

The project ships no data. A `Dataset` lists its files, and each `DataFile` names its public origin (the
upstream repository file at a pinned commit, as a raw URL) and its sha256. `fetch` returns a local path to
a verified copy, looking in three places in this order:

1. the offline mirror, if the environment variable DISCOVER_DATA_MIRROR names a directory: the file is
   expected at `<mirror>/<dataset name>/<file name>`, unchanged from upstream. When a mirror is set it
   replaces the network;
2. the user cache, `<cache>/<dataset name>/<file name>`, where `<cache>` is DISCOVER_CACHE or
   `pooch.os_cache("discover")`;
3. the network: the file is downloaded from its URL into the cache with pooch (unless a mirror is set or
   DISCOVER_OFFLINE is set to a non-empty value other than "0").

Every copy, mirror or cache, is checked against its sha256 before use. A missing or corrupt file raises
`DatasetError`, saying which file, where it was looked for and how to provide it.

A task declares its files as a `Dataset` (usually the one in `tasks/data/<dataset>.py`) and calls that
module's loader, which fetches the files and returns plain arrays:

    from tasks.data import load_roitman_rts
    trials = load_roitman_rts(subset=200)      # RoitmanTrials: arrays of shape (n_trials,)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pooch

from engine.task.errors import TaskSpecError

__all__ = [
    "CACHE_ENV",
    "MIRROR_ENV",
    "OFFLINE_ENV",
    "DataFile",
    "Dataset",
    "DatasetError",
    "cache_dir",
    "fetch",
    "fetch_all",
    "github_raw_url",
    "mirror_dir",
    "sha256_of",
]

MIRROR_ENV = "DISCOVER_DATA_MIRROR"
CACHE_ENV = "DISCOVER_CACHE"
OFFLINE_ENV = "DISCOVER_OFFLINE"


class DatasetError(TaskSpecError):
    """A dataset file is missing, corrupt, or cannot be parsed into the arrays a task needs.

    A TaskSpecError (the tasks package's base error), so the command line prints its message without a traceback.
    """


@dataclass(frozen=True, slots=True)
class DataFile:
    """One upstream file of a dataset.

    Attributes:
        name: path relative to the dataset's folder, with "/" separators, e.g. "raw_ibw/B6/B6_Ch0_IDRest_181.ibw";
            the same relative path in the mirror and in the cache.
        url: the public origin, e.g. a raw.githubusercontent.com URL at a pinned commit.
        sha256: the file's sha256 as 64 lowercase hex digits.
    """

    name: str
    url: str
    sha256: str

    def __post_init__(self) -> None:
        parts = PurePosixPath(self.name).parts
        if not parts or self.name.startswith("/") or ".." in parts or "\\" in self.name:
            raise DatasetError(f"DataFile name {self.name!r} must be a relative path like 'raw/x.csv' without '..'.")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise DatasetError(f"DataFile {self.name!r}: sha256 must be 64 lowercase hex digits; got {self.sha256!r}.")


@dataclass(frozen=True, slots=True)
class Dataset:
    """A named set of upstream files, with their licence and how to cite them.

    Attributes:
        name: the folder name in the mirror and the cache, e.g. "roitman-shadlen-rt".
        files: the registered files.
        licence: one line: the upstream licence and any conditions.
        citation: the paper(s) to cite when using the data.
    """

    name: str
    files: tuple[DataFile, ...]
    licence: str
    citation: str

    def __post_init__(self) -> None:
        names = [data_file.name for data_file in self.files]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise DatasetError(f"Dataset {self.name!r} lists these files more than once: {', '.join(duplicates)}.")

    def file(self, name: str) -> DataFile:
        """Returns the registered file called `name`; raises DatasetError listing the known names otherwise."""
        for data_file in self.files:
            if data_file.name == name:
                return data_file
        known = ", ".join(data_file.name for data_file in self.files)
        raise DatasetError(f"Dataset {self.name!r} has no file {name!r}. Registered files: {known}.")

    def path(self, name: str) -> Path:
        """Returns a local, verified path to the file called `name` (see `fetch`)."""
        return fetch(self, name)


def github_raw_url(repository: str, commit: str, path: str) -> str:
    """Returns the raw URL of `path` in the GitHub `repository` ("owner/name") at `commit` (40 hex digits)."""
    if len(commit) != 40:
        raise DatasetError(f"github_raw_url: commit must be a full 40-digit hash; got {commit!r}.")
    return f"https://raw.githubusercontent.com/{repository}/{commit}/{path}"


def mirror_dir() -> Path | None:
    """Returns the offline mirror directory named by DISCOVER_DATA_MIRROR, or None when it is unset or empty."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Returns the download cache: DISCOVER_CACHE if set, else pooch's per-user cache for "discover"."""
    value = os.environ.get(CACHE_ENV, "").strip()
    return Path(value).expanduser() if value else Path(pooch.os_cache("discover"))


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0")


# sha256 of files already hashed in this process, keyed by (path, size, mtime): loaders call fetch often.
_verified_hashes: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """Returns the sha256 of the file at `path` as lowercase hex (remembered while the file is unchanged)."""
    status = path.stat()
    key = (str(path.resolve()), status.st_size, status.st_mtime_ns)
    if key not in _verified_hashes:
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        _verified_hashes[key] = digest.hexdigest()
    return _verified_hashes[key]


def _corrupt(dataset: Dataset, data_file: DataFile, path: Path, where: str, found: str, advice: str) -> DatasetError:
    return DatasetError(
        f"{dataset.name}/{data_file.name} in the {where} at {path} is corrupt: its sha256 is {found}, "
        f"expected {data_file.sha256}. {advice}"
    )


def fetch(dataset: Dataset, name: str) -> Path:
    """Returns a local path to a verified copy of one file of `dataset`: from the mirror, the cache or the network.

    Args:
        dataset: the dataset the file belongs to.
        name: the file's registered name, e.g. "roitman_rts.csv".

    Returns:
        The path of a file whose sha256 matches the registry.

    Raises:
        DatasetError: the file is in none of the places, a copy found is corrupt, or the download failed.
    """
    data_file = dataset.file(name)
    relative = PurePosixPath(dataset.name, *PurePosixPath(data_file.name).parts)
    mirror = mirror_dir()
    cache_path = cache_dir().joinpath(*relative.parts)
    looked: list[str] = []

    if mirror is not None:
        mirror_path = mirror.joinpath(*relative.parts)
        if mirror_path.is_file():
            found = sha256_of(mirror_path)
            if found != data_file.sha256:
                raise _corrupt(
                    dataset, data_file, mirror_path, f"mirror ({MIRROR_ENV})", found,
                    f"Replace it with the unchanged upstream file from {data_file.url}.",
                )
            return mirror_path
        note = "" if mirror.is_dir() else f" (the mirror directory {mirror} does not exist)"
        looked.append(f"mirror ({MIRROR_ENV}): {mirror_path}: not found{note}")
    else:
        looked.append(f"mirror: not used, {MIRROR_ENV} is not set")

    network_reason = None
    if mirror is not None:
        network_reason = f"not tried, because {MIRROR_ENV} is set (the mirror replaces the network)"
    elif _offline():
        network_reason = f"not tried, because {OFFLINE_ENV} is set"

    if cache_path.is_file():
        found = sha256_of(cache_path)
        if found == data_file.sha256:
            return cache_path
        if network_reason is not None:
            raise _corrupt(
                dataset, data_file, cache_path, "cache", found,
                f"Delete it so that it is downloaded again from {data_file.url}, or provide it through {MIRROR_ENV}.",
            )
        looked.append(f"cache: {cache_path}: corrupt (sha256 {found}); downloading it again")
    else:
        looked.append(f"cache: {cache_path}: not found")

    if network_reason is None:
        try:
            downloaded = pooch.retrieve(
                data_file.url,
                known_hash=f"sha256:{data_file.sha256}",
                fname=cache_path.name,
                path=cache_path.parent,
                progressbar=False,
            )
        except Exception as error:  # pooch raises requests, OS and hash-mismatch errors; all mean "not available"
            looked.append(f"network: {data_file.url}: download failed: {type(error).__name__}: {error}")
        else:
            return Path(downloaded)
    else:
        looked.append(f"network: {data_file.url}: {network_reason}")

    places = "\n".join(f"  - {place}" for place in looked)
    network_advice = (
        f"allow the network (unset {MIRROR_ENV} and {OFFLINE_ENV})"
        if network_reason is not None
        else "make the URL reachable and try again"
    )
    raise DatasetError(
        f"{dataset.name}/{data_file.name} (sha256 {data_file.sha256}) is not available. Looked in:\n{places}\n"
        f"To provide it, either put the unchanged upstream file at <mirror>/{relative} and set {MIRROR_ENV}=<mirror>, "
        f"or {network_advice} so that it is downloaded from {data_file.url} into {cache_path.parent}."
    )


def fetch_all(dataset: Dataset, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Returns {file name: verified local path} for `names` (default: every file of `dataset`)."""
    chosen = [data_file.name for data_file in dataset.files] if names is None else list(names)
    return {name: fetch(dataset, name) for name in chosen}
