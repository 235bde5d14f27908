"""Wires a run together: task, configuration, database, worker pool, proposer and progress display."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from engine.config import ExperimentConfig, load_experiment_config
from engine.errors import ConfigError, EngineError
from engine.search.evaluation import build_context
from engine.search.loop import Budget, RunSummary, SearchLoop, evaluate_once
from engine.search.progress import ProgressDisplay
from engine.proposers.base import Proposer
from islands import ProgramDatabase, RunMeta
from sandbox.config import SandboxConfig
from sandbox.results import RunResult, TaskContext
from engine.task.spec import TaskSpec, data_hash, load_task

__all__ = ["prepare", "run_discovery", "evaluate_file", "default_db_path", "build_runner", "build_proposer"]


@dataclass(frozen=True, slots=True)
class Prepared:
    task: TaskSpec
    config: ExperimentConfig
    splits: Mapping[str, Any]
    meta: RunMeta


def prepare(task_yaml: Path, preset: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Prepared:
    """Loads the task, its data and the merged configuration."""
    task = load_task(task_yaml)
    config = load_experiment_config(task.file.defaults, str(task.yaml_path), preset, overrides)
    splits = task.load_splits()
    meta = RunMeta(
        task_name=task.name,
        task_version=task.version,
        data_hash=data_hash(splits),
        function_name=task.function_name,
        experiment_config=json.dumps({"task_yaml": str(task.yaml_path), "config": config.model_dump(mode="json")}),
    )
    return Prepared(task=task, config=config, splits=splits, meta=meta)


def task_yaml_of(meta: RunMeta) -> Path | None:
    """Returns the task.yaml a run was started with, as recorded in its database (None for foreign databases)."""
    try:
        return Path(json.loads(meta.experiment_config)["task_yaml"])
    except (ValueError, KeyError, TypeError):
        return None


def default_db_path(task: TaskSpec) -> Path:
    """runs/<task>-<UTC time>.db under the current directory."""
    return Path("runs") / f"{task.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.db"


def build_runner(context: TaskContext, config: ExperimentConfig, db_path: Path | None = None):
    """Returns the worker pool the sandbox section asks for; the run's database files are hidden from its workers."""
    from sandbox.runners import make_runner

    hidden = [] if db_path is None else [str(db_path) + suffix for suffix in ("", "-wal", "-shm", ".lock")]
    return make_runner(config.sandbox, context, hidden_paths=hidden)


BWRAP_MISSING = (
    "warning: bubblewrap ('bwrap') was not found, so candidates run as plain subprocesses with resource limits only "
    "and can read your files and use the network; install it (apt-get install bubblewrap) to isolate them."
)


def isolation_warning(sandbox: SandboxConfig) -> str | None:
    """Returns BWRAP_MISSING when candidates will run on this machine without bubblewrap, else None.

    Only the process backend uses bubblewrap, and only workers on this machine (the local runner or a private
    Ray) are known to lack it; with use_bwrap set, the sandbox itself uses it or refuses to start.
    """
    from sandbox.isolation import find_bwrap

    on_this_machine = sandbox.runner == "local" or sandbox.ray_address is None
    if sandbox.backend != "process" or sandbox.use_bwrap is not None or not on_this_machine:
        return None
    return BWRAP_MISSING if find_bwrap() is None else None


def _warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _llm_key_available(config: ExperimentConfig) -> bool:
    if config.llm is None:
        return False
    from engine.llm.config import DEFAULT_API_KEY_ENV

    default = DEFAULT_API_KEY_ENV[config.llm.provider]
    return all(os.environ.get(model.api_key_env or default) for model in config.llm.models)


def build_proposer(config: ExperimentConfig) -> tuple[Proposer, str]:
    """Returns (proposer, its name): the LLM when configured and keyed, else the LLM-free mutator."""
    choice = config.run.proposer
    use_llm = choice == "llm" or (choice == "auto" and _llm_key_available(config))
    if use_llm:
        if config.llm is None:
            raise ConfigError("run.proposer is 'llm' but there is no llm section; use --config configs/openai.yaml or --proposer openai.")
        from engine.proposers.llm import build_llm_proposer

        llm = config.llm
        if config.run.max_cost_usd is not None:  # --max-cost-usd caps the LLM's own budget too
            cap = min(x for x in (config.run.max_cost_usd, llm.max_cost_usd) if x is not None)
            llm = llm.model_copy(update={"max_cost_usd": cap})
        proposer = build_llm_proposer(llm)
        return proposer, f"{config.llm.provider}"
    from engine.proposers.mutator import MutationProposer

    return MutationProposer(seed=config.run.seed), "mutator"


def run_discovery(
    task_yaml: Path,
    *,
    db_path: Path | None = None,
    preset: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    quiet: bool = False,
    echo=print,
    warn=_warn,
) -> tuple[RunSummary, Path]:
    """Runs (or resumes) a discovery and returns its summary and database path.

    `echo` prints progress (not with `quiet`); `warn` prints warnings, on stderr by default, even with `quiet`.
    """
    prepared = prepare(task_yaml, preset, overrides)
    task, config = prepared.task, prepared.config
    db_path = Path(db_path) if db_path is not None else default_db_path(task)
    resuming = db_path.exists()
    database = ProgramDatabase.open(db_path, config.islands, prepared.meta, seed=config.run.seed)
    proposer, proposer_name = build_proposer(config)
    context = build_context(task, prepared.splits, seed=config.run.seed)
    if not quiet:
        echo(
            f"{'resuming' if resuming else 'starting'} {task.name} v{task.version}: database {db_path}, "
            f"{database.num_evaluations} evaluations stored, proposer {proposer_name}, "
            f"{config.sandbox.num_workers} workers ({config.sandbox.runner})"
        )
    warning = isolation_warning(config.sandbox)
    if warning is not None:
        warn(warning)
        # Said once here, where a person reads it; the workers then need not log it again.
        config = config.model_copy(update={"sandbox": config.sandbox.model_copy(update={"use_bwrap": False})})
    runner = build_runner(context, config, db_path)
    max_in_flight = config.run.max_in_flight or 2 * config.sandbox.num_workers
    display = ProgressDisplay(config.run.max_evals, config.sandbox.num_workers, quiet=quiet)
    loop = SearchLoop(
        task,
        database,
        runner,
        proposer,
        proposer_name=proposer_name,
        max_in_flight=max_in_flight,
        max_in_flight_per_island=config.sandbox.max_in_flight_per_island,
        seed=config.run.seed,
        on_event=display,
    )
    budget = Budget(
        max_evals=config.run.max_evals,
        max_hours=config.run.max_hours,
        target_score=config.run.target_score,
        max_cost_usd=config.run.max_cost_usd,
        max_proposals=int(config.run.max_evals * config.run.max_duplicate_ratio) + 100,
    )
    try:
        seed_program = loop.ensure_seed(db_path)  # a failed or drifted seed stops here, before the search
        if not quiet:
            echo(f"seed program {seed_program.id}: held-out score {seed_program.score:.4f}")
        with display:
            summary = asyncio.run(run_with_signals(loop, budget, echo))
    finally:
        close = getattr(runner, "close", None)
        if close is not None:
            close()
        database.close()
    return summary, db_path


async def run_with_signals(loop: SearchLoop, budget: Budget, echo) -> RunSummary:
    """First Ctrl-C/SIGTERM: stop taking new work and end cleanly. Second: exit at once (SQLite stays consistent)."""
    event_loop = asyncio.get_running_loop()
    presses = {"count": 0}

    def on_signal() -> None:
        presses["count"] += 1
        if presses["count"] == 1:
            loop.stop_requested = True
            echo("stopping: finishing up and committing; press Ctrl-C again to exit at once")
        else:
            os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            event_loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        return await loop.run(budget)
    finally:
        await loop.proposer.aclose()  # SDK connections belong to this event loop: close them before it ends
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                event_loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass


def _read_candidate(path: Path) -> str:
    """Returns a candidate file's source, decoded as Python decodes it (UTF-8 unless a coding line says otherwise).

    Raises EngineError when the file is missing or its bytes are not text in that encoding.
    """
    if not path.is_file():
        raise EngineError(f"{path}: no such candidate file.")
    data = path.read_bytes()
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:  # bytes on the first two lines that are not UTF-8, or an unknown coding line
        encoding = "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise EngineError(
            f"{path} is not {error.encoding.upper()} text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "save it as UTF-8, the encoding of Python source files, and evaluate it again."
        ) from None


def evaluate_file(
    task_yaml: Path, candidate_py: Path, *, heldout: str = "selection", preset: Path | None = None
) -> tuple[RunResult, TaskSpec]:
    """Evaluates one candidate file through the same sandbox and fitter as a run (one local worker)."""
    from sandbox.runners import make_runner

    source = _read_candidate(Path(candidate_py))
    prepared = prepare(task_yaml, preset, {"sandbox": {"runner": "local", "num_workers": 1}})
    context = build_context(prepared.task, prepared.splits, heldout=heldout, seed=prepared.config.run.seed)
    runner = make_runner(prepared.config.sandbox, context)
    try:
        result = evaluate_once(runner, source, prepared.task.function_name)
    finally:
        runner.close()
    return result, prepared.task
