"""Loads and validates task.yaml: the one description of a task that the engine reads.

A task is a folder holding `task.yaml`, the seed model, a scoring module, a data module and a README:

    name: bandit
    version: 1                       # bump whenever scoring changes; scores of different versions never mix
    summary: Cognitive model of choices in two-armed bandits.
    evolve: seed.py:agent            # the function the proposer rewrites
    inputs: {state: "float32[8]", choice: int32, reward: float32}   # its arguments after params
    score: score.py:score            # score(candidate, train, heldout, seed) -> {"score": ..., ...}
    data: data.py:load               # load(**data_options) -> {"train": .., "selection": .., "test": ..}
    limits: {timeout_s: 60, memory_mb: 4096}
"""

from __future__ import annotations

import ast
import hashlib
import types
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.task.errors import TaskSpecError
from sandbox.zygote import load_module

__all__ = ["TaskSpec", "TaskLimits", "load_task", "data_hash", "FileFunction", "DEFAULT_SEED_SCORE_TOLERANCE"]

SPLITS = ("train", "selection", "test")

#: How far the seed may score from `seed_score` (absolute, in score units) when task.yaml does not say. It suits a
#: score that barely moves between fit seeds, as a likelihood fitted by gradients from several starts does (the
#: bandit and ddm tasks, the tuning twin: within 0.0002 over fit seeds 0-4): it absorbs rounding seed_score to four
#: decimals and arithmetic that differs between machines, and it is a tenth of the smallest gap between a bundled
#: seed and a baseline (0.022). A noisier fitter needs a larger `seed_score_tolerance` in its task.yaml;
#: `discover task check` measures the seed over several fit seeds and says what it needs.
DEFAULT_SEED_SCORE_TOLERANCE = 0.002


class TaskLimits(BaseModel):
    """Resource limits for each candidate of this task, enforced by the sandbox."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    timeout_s: float = Field(60.0, gt=0)
    memory_mb: int = Field(4096, gt=64)
    max_processes: int = Field(64, ge=1)
    max_file_mb: int = Field(64, ge=1)
    # `discover verify` refits many simulated datasets; it gets its own, longer wall-clock limit.
    verify_timeout_s: float = Field(900.0, gt=0)


class Baseline(BaseModel):
    """A reference model scored through the same path as candidates.

    Attributes:
        file: a candidate module in the task folder (it defines the evolved function).
        description: one line shown in tables and reports.
        kind: "literature" (a published model), "ground_truth" (the generating model of a synthetic twin),
            or "ceiling" (a flexible model, e.g. a small GRU, that bounds how much is left to explain).
        score: optional "file.py:function" scoring entry used instead of the task's `score` (e.g. a ceiling
            that fits its weights its own way); same signature as the task's score function.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    file: str
    description: str = ""
    kind: Literal["literature", "ground_truth", "ceiling"] = "literature"
    score: str | None = None


class TaskFile(BaseModel):
    """The schema of task.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]*$")
    version: int = Field(ge=1)
    summary: str
    reference: str = ""
    evolve: str
    # The evolved function's arguments after `params`, in order: name -> "dtype[shape]" (e.g. "float32[8]",
    # "int32", "float32[n_trials, 9]"; a name in a shape is any size). The candidate is traced with these shapes
    # and no data, and the task's score receives the exported computation with the same signature.
    inputs: dict[str, str] = Field(min_length=1)
    score: str
    data: str
    data_options: dict[str, Any] = Field(default_factory=dict)
    # Keyword arguments of the score function beyond (candidate, train, heldout, seed): the fitter's settings
    # (restarts, max_steps, ...), so that a copy of the task can fit faster without editing score.py.
    score_options: dict[str, Any] = Field(default_factory=dict)
    seed_score: float | None = None
    seed_score_tolerance: float = Field(DEFAULT_SEED_SCORE_TOLERANCE, gt=0)
    # What each value of the score's `scores_per_test` is: a geometric-mean probability per trial, a
    # log-likelihood per trial, or another score. Model comparisons and ablations use it to report differences
    # in held-out log-likelihood per trial (engine/verification/comparison.py).
    per_test_units: Literal["likelihood_per_trial", "loglik_per_trial", "score"] = "score"
    limits: TaskLimits = Field(default_factory=TaskLimits)
    allowed_imports: tuple[str, ...] = ("math", "numpy", "jax", "optax")
    primitives: tuple[str, ...] = ()
    description: str = ""
    baselines: dict[str, Baseline] = Field(default_factory=dict)
    verify: str | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)

    @field_validator("score_options")
    @classmethod
    def _options_are_not_the_scores_arguments(cls, options: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(set(options) & {"candidate", "train", "heldout", "seed"})
        if taken:
            raise ValueError(f"{taken} are the score function's own arguments, which the engine passes; "
                             "score_options holds only its other keyword arguments (e.g. restarts, max_steps)")
        return options


class FileFunction(BaseModel):
    """A `file.py:function` reference inside a task folder, resolved to an absolute path."""

    model_config = ConfigDict(frozen=True)
    path: Path
    function: str

    def __str__(self) -> str:
        return f"{self.path}:{self.function}"

    def load(self) -> Any:
        """Imports the file as a module and returns the function."""
        module = import_task_module(self.path)
        return getattr(module, self.function)


class TaskSpec(BaseModel):
    """A validated task: task.yaml's fields plus resolved paths."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    folder: Path
    yaml_path: Path
    file: TaskFile
    evolve: FileFunction
    score: FileFunction
    data: FileFunction
    seed_source: str

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def version(self) -> int:
        return self.file.version

    @property
    def function_name(self) -> str:
        return self.evolve.function

    def load_splits(self, **overrides: Any) -> dict[str, Any]:
        """Returns {"train": .., "selection": .., "test": ..} from the task's data module."""
        options = {**self.file.data_options, **overrides}
        try:
            splits = self.data.load()(**options)
        except OSError as error:  # a file the data module opens itself (registry files raise DatasetError)
            if error.filename is None:
                raise
            raise TaskSpecError(
                f"{self.data}: could not read the data file {error.filename} ({error.strerror or error}); put the "
                f"file there, or point the data module or the data_options of {self.yaml_path} at where it is."
            ) from None
        missing = [s for s in SPLITS if s not in splits]
        if missing:
            raise TaskSpecError(
                f"{self.data}: returned splits {sorted(splits)}; expected {list(SPLITS)} (missing {missing})."
            )
        return splits

    def resolve_entry(self, reference: str, field: str) -> FileFunction:
        """Resolves another `file.py:function` of this task folder (e.g. a baseline's own scoring entry)."""
        return _resolve(self.folder, self.yaml_path, field, reference)

    def baseline_sources(self) -> dict[str, str]:
        """Returns baseline name -> module source, read from the task folder."""
        sources = {}
        for name, baseline in self.file.baselines.items():
            path = self.folder / baseline.file
            if not path.is_file():
                raise TaskSpecError(f"{self.yaml_path}: baseline '{name}' names {baseline.file}, which does not exist.")
            sources[name] = path.read_text()
        return sources


def import_task_module(path: Path) -> types.ModuleType:
    """Imports a task's python file by path, as a module of a package that stands for the task's folder.

    The task's files can then import each other relatively (`from .score import score`), wherever the folder lies.
    """
    try:
        return load_module(str(Path(path).resolve()))
    except ValueError as error:
        raise TaskSpecError(f"cannot import {path}: not a python file.") from error


def _resolve(folder: Path, yaml_path: Path, field: str, reference: str) -> FileFunction:
    if reference.count(":") != 1:
        raise TaskSpecError(f"{yaml_path}: {field} = '{reference}'; expected 'file.py:function'.")
    file_name, function = reference.split(":")
    path = (folder / file_name).resolve()
    if not path.is_file():
        raise TaskSpecError(f"{yaml_path}: {field} = '{reference}', but {path} does not exist.")
    tree = ast.parse(path.read_text(), filename=str(path))
    names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if function not in names:
        raise TaskSpecError(
            f"{yaml_path}: {field} = '{reference}', but {file_name} has no function '{function}'. "
            f"Found: {', '.join(names) or 'no functions'}."
        )
    return FileFunction(path=path, function=function)


def load_task(path: str | Path) -> TaskSpec:
    """Reads and validates a task.yaml (or a task folder holding one).

    Raises:
        TaskSpecError: with the file, the field and what to do, for every malformed input.
    """
    yaml_path = Path(path)
    if yaml_path.is_dir():
        yaml_path = yaml_path / "task.yaml"
    if not yaml_path.is_file():
        raise TaskSpecError(f"{yaml_path}: no such task file. Pass a task.yaml, e.g. tasks/bandit/task.yaml.")
    try:
        raw = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as error:
        raise TaskSpecError(f"{yaml_path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise TaskSpecError(f"{yaml_path}: expected a mapping of task fields, found {type(raw).__name__}.")
    try:
        task_file = TaskFile.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise TaskSpecError(f"{yaml_path}: {problems}") from None
    folder = yaml_path.parent.resolve()
    evolve = _resolve(folder, yaml_path, "evolve", task_file.evolve)
    return TaskSpec(
        folder=folder,
        yaml_path=yaml_path.resolve(),
        file=task_file,
        evolve=evolve,
        score=_resolve(folder, yaml_path, "score", task_file.score),
        data=_resolve(folder, yaml_path, "data", task_file.data),
        seed_source=evolve.path.read_text(),
    )


def data_hash(splits: Mapping[str, Any]) -> str:
    """Returns a sha256 over every array and number in the splits, in a stable order."""
    digest = hashlib.sha256()

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key in sorted(value):
                visit(f"{prefix}/{key}", value[key])
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                visit(f"{prefix}/{index}", item)
        else:
            array = np.ascontiguousarray(np.asarray(value))
            digest.update(f"{prefix}:{array.dtype}:{array.shape}".encode())
            digest.update(array.tobytes())

    visit("", splits)
    return digest.hexdigest()
