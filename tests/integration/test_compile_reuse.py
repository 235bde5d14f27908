"""Candidates that differ only in their numbers share one compiled program, through the real two-stage sandbox.

The engine lifts float literals into constants (`engine/constants.py`); the tracing stage exports the lifted
function, the trusted scorer passes the values back in, and the fitter makes them arguments of its compiled
program, which the scorers' persistent compilation cache then holds. Checked here: the scores are those of the
candidate as written, a second candidate with other numbers adds no compiled fit program to the cache, a
candidate whose literals cannot be lifted still scores, and the tracing stage cannot reach the cache.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from engine.search.evaluation import build_context, make_job
from engine.search.session import prepare
from sandbox import Outcome
from sandbox.isolation import CACHE_GID, find_bwrap
from sandbox.pool import SandboxSpec

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks/bandit/task.yaml"
SEED = (TASK.parent / "seed.py").read_text()

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_bwrap() is None, reason="needs bubblewrap (bwrap)")]


def with_error_weight(weight: str) -> str:
    """The seed whose prediction error is scaled by a literal (which a fit cannot absorb: alpha <= 1)."""
    return SEED.replace("prediction_error = reward - q[choice]", f"prediction_error = {weight} * (reward - q[choice])")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("xla-cache")


@pytest.fixture(scope="module")
def context():
    prepared = prepare(TASK, None, {})
    context = build_context(prepared.task, prepared.splits)
    return replace(context, limits=replace(context.limits, timeout_s=60.0))


@pytest.fixture(scope="module")
def sandbox(context, cache):
    staged = SandboxSpec(use_bwrap=True, compile_cache=str(cache))(context, {})
    yield staged
    staged.close()


def fit_programs(cache: Path) -> set[str]:
    return {path.name for path in cache.iterdir() if path.name.startswith("jit_with_constants") and path.name.endswith("-cache")}


def test_numbers_change_the_score_not_the_compiled_program(sandbox, cache):
    first = make_job(1, with_error_weight("0.1"), "agent")
    assert first.constants == (("__constant_0", 0.1),)
    scored = sandbox.run(first)
    assert scored.outcome is Outcome.OK, scored.error
    programs = fit_programs(cache)
    assert len(programs) == 1

    second = make_job(2, with_error_weight("0.6"), "agent")
    rescored = sandbox.run(second)
    assert rescored.outcome is Outcome.OK, rescored.error
    assert fit_programs(cache) == programs  # the second candidate's fit program came from the cache
    as_written = sandbox.run(replace(second, job_id=3, lifted_source="", constants=()))
    assert as_written.outcome is Outcome.OK, as_written.error
    assert rescored.scores["score"] == pytest.approx(as_written.scores["score"], abs=1e-4)
    assert abs(rescored.scores["score"] - scored.scores["score"]) > 1e-3  # the numbers did reach the model


def test_a_worker_of_another_uid_reads_and_refreshes_what_the_first_compiled(sandbox, context, cache):
    # Run as root, each worker drops to a uid of its own: the second sandbox's scorer is another user of the cache.
    def stamps() -> dict[str, bytes]:
        return {name: (cache / name.replace("-cache", "-atime")).read_bytes() for name in fit_programs(cache)}

    before = stamps()
    first = sandbox.run(make_job(6, with_error_weight("0.2"), "agent"))
    assert first.outcome is Outcome.OK, first.error
    after_first = stamps()
    (program,) = [name for name, stamp in after_first.items() if before.get(name) != stamp]  # compiled or read
    with SandboxSpec(use_bwrap=True, compile_cache=str(cache))(context, {}) as other:
        second = other.run(make_job(7, with_error_weight("0.3"), "agent"))
    assert second.outcome is Outcome.OK, second.error
    after_second = stamps()
    assert set(after_second) == set(after_first)  # nothing compiled anew
    assert after_second[program] != after_first[program]  # a hit refreshes its entry's time, under the cache's lock
    if os.geteuid() == 0:  # shared through a group of the scoring workers', not with every user of the machine
        assert cache.stat().st_mode & 0o7777 == 0o2770 and cache.stat().st_gid == CACHE_GID
        assert all(path.stat().st_mode & 0o007 == 0 for path in cache.iterdir()), sorted(
            (path.name, oct(path.stat().st_mode)) for path in cache.iterdir())


def test_a_literal_python_needs_as_a_number_falls_back_to_the_source_as_written(sandbox):
    source = "import math\n" + SEED.replace("q = state[:2]", "q = state[:2] * math.exp(0.0)")
    job = make_job(4, source, "agent")
    assert job.constants  # lifted, but math.exp of a traced value fails: the tracer exports the original
    result = sandbox.run(job)
    assert result.outcome is Outcome.OK, result.error
    assert result.scores["score"] == pytest.approx(0.7742, abs=1e-3)


def test_the_tracing_stage_cannot_write_to_the_cache(sandbox, cache):
    planted = cache / "planted"
    source = SEED.replace('    q = state[:2]\n', f'''    try:
        open({str(planted)!r}, "w").write("x")
    except OSError:
        pass
    q = state[:2]
''', 1)
    result = sandbox.run(make_job(5, "import builtins\n" + source, "agent"))
    assert not planted.exists()
    assert result.outcome in (Outcome.OK, Outcome.FORBIDDEN)
