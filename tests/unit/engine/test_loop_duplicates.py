"""The search loop skips a candidate that repeats one being evaluated, as it skips one that repeats a stored program.

Real parts: a tiny task folder, a SQLite database, the sandboxed local worker pool and the progress display; the
proposer is a twin that answers with the same program several times.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path

import pytest

from engine.search.evaluation import build_context
from engine.search.loop import Budget, SearchLoop
from engine.search.progress import ProgressDisplay
from engine.proposers.base import PromptContext, Proposal
from islands import IslandsConfig, ProgramDatabase, RunMeta
from sandbox.config import SandboxConfig
from sandbox.runners import make_runner
from engine.task.spec import load_task

SEED = 'def f(params, x):\n    PARAMS = {"a": (0.0, 1.0)}\n    return -abs(x - 3.0)\n'
BETTER = 'def f(params, x):\n    PARAMS = {"a": (0.0, 1.0)}\n    return -abs(x - 2.0)\n'
# The same program as BETTER to the database (the same canonical hash): only a comment and formatting differ.
BETTER_AGAIN = ('def f(params, x):\n    PARAMS = {"a": (0.0, 1.0)}\n    # closer to the data\n    return -abs(x - 2.0)\n',
                'def f(params, x):\n\n    PARAMS = {"a": (0.0, 1.0)}\n    return -abs( x-2.0 )\n')


@pytest.fixture
def tiny_task(tmp_path: Path) -> Path:
    """A task whose candidates are f(x) and whose score is f at the held-out x: it evaluates in milliseconds."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "task.yaml").write_text(
        "name: tiny\nversion: 1\nsummary: Find the held-out x.\nevolve: seed.py:f\ninputs: {x: float32}\n"
        "score: score.py:score\n"
        "data: data.py:load\nlimits: {timeout_s: 30, memory_mb: 1024}\nallowed_imports: [math]\n"
    )
    (folder / "seed.py").write_text(SEED)
    (folder / "score.py").write_text(
        "def score(candidate, train, heldout, seed=0):\n    return {'score': float(candidate({'a': 0.5}, heldout['x']))}\n"
    )
    (folder / "data.py").write_text("def load():\n    return {'train': {'x': 1.0}, 'selection': {'x': 1.0}, "
                                    "'test': {'x': 1.0}}\n")
    return folder / "task.yaml"


class Answers:
    """A proposer twin: each request returns the next `answers_per_request` sources of a script."""

    def __init__(self, sources: Sequence[str], answers_per_request: int = 1) -> None:
        self.sources = list(sources)
        self.answers_per_request = answers_per_request

    async def propose(self, context: PromptContext) -> list[Proposal]:
        taken, self.sources = self.sources[: self.answers_per_request], self.sources[self.answers_per_request:]
        return [Proposal(source=source, proposer="script") for source in taken]

    async def aclose(self) -> None:
        pass


def run_loop(task_yaml: Path, db: Path, proposer: Answers, max_evals: int, max_in_flight: int):
    task = load_task(task_yaml)
    splits = task.load_splits()
    meta = RunMeta(task_name=task.name, task_version=task.version, data_hash="d" * 16, function_name="f")
    database = ProgramDatabase.open(db, IslandsConfig(num_islands=1), meta)
    runner = make_runner(SandboxConfig(runner="local", num_workers=1), build_context(task, splits))
    display = ProgressDisplay(max_evals, 1, stream=io.StringIO(), line_every_s=0.0)
    try:
        loop = SearchLoop(task, database, runner, proposer, proposer_name="script", max_in_flight=max_in_flight,
                          max_in_flight_per_island=max_in_flight, on_event=display)
        loop.ensure_seed()
        summary = asyncio.run(loop.run(Budget(max_evals=max_evals, max_proposals=20)))
        stored = [p.source for p in database.all_programs() if p.proposer == "script"]
        return summary, stored, database.stats(), display
    finally:
        runner.close()
        database.close()


@pytest.mark.slow
def test_identical_answers_of_one_request_are_evaluated_once(tiny_task: Path, tmp_path: Path) -> None:
    proposer = Answers([BETTER, BETTER, *BETTER_AGAIN], answers_per_request=4)
    summary, stored, stats, display = run_loop(tiny_task, tmp_path / "run.db", proposer, max_evals=1, max_in_flight=1)
    assert stored == [BETTER]
    assert (summary.evaluations, summary.duplicates) == (1, 3)
    assert stats["duplicates"] == 3  # stored like a duplicate of a stored program, so a resumed run counts them
    assert "dup=3" in display.line()
    assert summary.best is not None and summary.best.source == BETTER


@pytest.mark.slow
def test_a_repeat_of_a_candidate_still_evaluating_is_skipped(tiny_task: Path, tmp_path: Path) -> None:
    other = tuple(f'def f(params, x):\n    PARAMS = {{"a": (0.0, 1.0)}}\n    return -abs(x - {value})\n'
                  for value in (1.5, 1.0))
    # Three requests are out at once; their answers repeat one program, which is still being evaluated.
    proposer = Answers([BETTER, BETTER_AGAIN[0], BETTER_AGAIN[1], *other])
    summary, stored, stats, display = run_loop(tiny_task, tmp_path / "run.db", proposer, max_evals=3, max_in_flight=3)
    repeats = [source for source in stored if source not in other]
    assert len(repeats) == 1 and repeats[0] in (BETTER, *BETTER_AGAIN)  # the copy whose request came back first
    assert sorted(source for source in stored if source in other) == sorted(other)
    assert (summary.evaluations, summary.duplicates, stats["duplicates"]) == (3, 2, 2)
    assert "dup=2" in display.line()


@pytest.mark.slow
def test_duplicates_are_evaluated_when_the_config_allows_them(tiny_task: Path, tmp_path: Path) -> None:
    task = load_task(tiny_task)
    meta = RunMeta(task_name=task.name, task_version=task.version, data_hash="d" * 16, function_name="f")
    database = ProgramDatabase.open(tmp_path / "run.db", IslandsConfig(num_islands=1, reject_duplicates=False), meta)
    runner = make_runner(SandboxConfig(runner="local", num_workers=1), build_context(task, task.load_splits()))
    try:
        loop = SearchLoop(task, database, runner, Answers([BETTER, BETTER], answers_per_request=2),
                          proposer_name="script", max_in_flight=1, max_in_flight_per_island=1)
        loop.ensure_seed()
        summary = asyncio.run(loop.run(Budget(max_evals=2, max_proposals=5)))
    finally:
        runner.close()
        database.close()
    assert (summary.evaluations, summary.duplicates) == (2, 0)


class PaidAnswers(Answers):
    """Like Answers, but every answer cost 100 tokens and $0.01, as an LLM's would."""

    async def propose(self, context: PromptContext) -> list[Proposal]:
        return [Proposal(source=p.source, proposer="script", tokens=100, cost_usd=0.01)
                for p in await super().propose(context)]


@pytest.mark.slow
def test_a_skipped_duplicate_counts_its_tokens_and_cost(tiny_task: Path, tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    proposer = PaidAnswers([BETTER, BETTER, *BETTER_AGAIN], answers_per_request=4)
    summary, _, stats, display = run_loop(tiny_task, db, proposer, max_evals=1, max_in_flight=1)
    assert summary.duplicates == 3
    assert (stats["tokens"], stats["duplicate_tokens"]) == (400, 300)  # all four answers were paid for
    assert stats["cost_usd"] == pytest.approx(0.04) and stats["duplicate_cost_usd"] == pytest.approx(0.03)
    assert display.tokens == 400 and display.cost_usd == pytest.approx(0.04)
    reopened = ProgramDatabase.open_readonly(db)  # the counts are stored, not only kept in memory
    try:
        assert reopened.stats()["tokens"] == 400
    finally:
        reopened.close()
