"""Hostile candidates that want a score they did not earn, through the same sandbox and scorer as a run.

Every route a probe found, and a few more: patching the scorer's modules through aliases, subscripts,
`sys.modules`, `gc`, frames and closures; reading data files and regenerating splits; forging the verdict on the
result pipe; host callbacks; a computation that loops forever or asks for 50 GB. The task context allows every
import ("*",), which turns the static check off: the guard under test is the split between the tracing sandbox,
where candidate Python runs without data, and the trusted scorer, where none runs.

None of these may score above its honest score (the seed's, 0.7742 on the bandit task); each ends with an
outcome that a run stores.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from engine.search.evaluation import build_context, make_job
from engine.search.session import prepare
from sandbox import Outcome
from sandbox.isolation import find_bwrap
from sandbox.pool import SandboxSpec
from tests.tasks.candidates import MIRROR

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks/bandit/task.yaml"
SEED = (TASK.parent / "seed.py").read_text()
HONEST = 0.7742  # the seed's held-out score (task.yaml's seed_score)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_bwrap() is None, reason="needs bubblewrap (bwrap)")]


@pytest.fixture(scope="module")
def sandbox():
    prepared = prepare(TASK, None, {})
    context = build_context(prepared.task, prepared.splits)
    limits = replace(context.limits, timeout_s=20.0, memory_mb=2048)
    context = replace(context, allowed_imports=("*",), limits=limits)
    staged = SandboxSpec(use_bwrap=True)(context, {})
    yield staged
    staged.close()


def evaluate(sandbox, source: str, job_id: int = 1):
    return sandbox.run(make_job(job_id, source, "agent"))


def with_prelude(prelude: str, body: str = "") -> str:
    """The seed with `prelude` at module level and `body` at the top of `agent` (after PARAMS)."""
    source = prelude + "\n" + SEED
    if body:
        anchor = '    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}\n'
        source = source.replace(anchor, anchor + "".join(f"    {line}\n" for line in body.splitlines()))
    return source


def assert_not_above_honest(result) -> None:
    assert isinstance(result.outcome, Outcome)
    if result.outcome is Outcome.OK:
        assert result.scores["score"] <= HONEST + 1e-4, result.scores
    else:
        assert not result.scores


def test_the_honest_seed_scores_as_in_task_yaml(sandbox):
    result = evaluate(sandbox, SEED)
    assert result.outcome is Outcome.OK, result.error
    assert abs(result.scores["score"] - HONEST) < 1e-4
    # the module's first job: the scoring worker started while the tracing stage ran is the one that scored it
    assert sandbox.scorer.workers_started == 1


PATCHES = {
    "alias": "import jax, jax.numpy as jnp\nnn = jax.nn\nnn.log_softmax = lambda x, axis=-1: jnp.zeros_like(x)\n",
    "subscript": "import jax.numpy as jnp\n[jnp][0].take_along_axis = lambda a, i, axis=None: jnp.zeros(i.shape)\n",
    "numpy": "import numpy\nm = numpy\nm.exp = lambda x: 0.999\n",
    "sys.modules": (
        "import jax, jax.numpy as jnp\n"
        "for _m in list(jax.interpreters.os.sys.modules.values()):\n"
        "    for _name in ('session_log_likelihoods', 'score', 'fit_maximum_likelihood', 'log_softmax'):\n"
        "        if hasattr(_m, _name):\n"
        "            try:\n"
        "                setattr(_m, _name, lambda *a, **k: {'score': 0.999})\n"
        "            except Exception:\n"
        "                pass\n"
    ),
    "gc": (
        "import gc\n"
        "for _o in gc.get_objects():\n"
        "    if isinstance(_o, dict) and 'heldout' in _o:\n"
        "        _o['heldout'] = _o.get('train')\n"
        "    if callable(_o) and getattr(_o, '__name__', '') in ('validate', 'validate_export', 'score'):\n"
        "        _o.__code__ = (lambda *a, **k: {'outcome': 'OK', 'scores': {'score': 0.999}}).__code__\n"
    ),
    "frames": (
        "import sys\n"
        "_frame = sys._getframe()\n"
        "while _frame is not None:\n"
        "    for _name in ('validate', 'validate_export', 'classify'):\n"
        "        if _name in _frame.f_globals:\n"
        "            _frame.f_globals[_name] = lambda *a, **k: {'outcome': 'OK', 'scores': {'score': 0.999}}\n"
        "    _frame = _frame.f_back\n"
    ),
    "closures": (
        "import gc, types\n"
        "for _o in gc.get_objects():\n"
        "    if isinstance(_o, types.FunctionType) and _o.__closure__:\n"
        "        for _cell in _o.__closure__:\n"
        "            try:\n"
        "                if isinstance(_cell.cell_contents, float):\n"
        "                    _cell.cell_contents = 0.999\n"
        "            except ValueError:\n"
        "                pass\n"
    ),
}


@pytest.mark.parametrize("route", sorted(PATCHES))
def test_patching_whatever_the_candidate_can_reach_gets_no_more_than_its_honest_score(sandbox, route):
    result = evaluate(sandbox, with_prelude(PATCHES[route]))
    assert_not_above_honest(result)
    # the patches reach only the tracing process: the computation scored is the seed's own, or, where the patch
    # broke the tracing process's own verdict, nothing is scored
    if route in ("frames", "gc"):
        assert result.outcome in (Outcome.OK, Outcome.CRASHED), result
    else:
        assert result.outcome is Outcome.OK, result.error
    if result.outcome is Outcome.OK:
        assert abs(result.scores["score"] - HONEST) < 1e-4


def test_a_forged_verdict_on_the_result_pipe_is_not_believed(sandbox):
    forged = ('{"outcome": "OK", "scores": {"score": 0.997}, "details": {"exported": "AAAA"}}').encode()
    prelude = (
        "import os\n"
        f"_forged = {forged!r}\n"
        "for _fd in range(3, 256):\n"
        "    try:\n"
        "        os.write(_fd, _forged)\n"
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)\n"
    )
    result = evaluate(sandbox, with_prelude(prelude))
    assert_not_above_honest(result)
    assert result.outcome in (Outcome.INVALID_OUTPUT, Outcome.CRASHED), result


def test_the_tracing_sandbox_holds_no_data_and_cannot_open_or_regenerate_it(sandbox):
    """A candidate looks everywhere it can for the splits: memory, the data mirror, the task's data module."""
    probe = (
        "import gc, os, sys\n"
        "import numpy as np\n"
        "found = []\n"
        "for _o in gc.get_objects():  # arrays are not tracked by gc: look in every container that is\n"
        "    _values = _o.values() if isinstance(_o, dict) else _o if isinstance(_o, (list, tuple)) else ()\n"
        "    for _v in list(_values):\n"
        "        if isinstance(_v, np.ndarray) and _v.size >= 200:\n"
        "            found.append(f'array{_v.shape}')\n"
        "    if isinstance(_o, dict) and ('choices' in _o or 'train' in _o or 'heldout' in _o):\n"
        "        found.append('split dict')\n"
        f"for _path in ({str(MIRROR)!r}, {str(REPO / 'tasks')!r}, {str(REPO)!r}):\n"
        "    for _root, _dirs, _files in os.walk(_path):\n"
        "        _dirs[:] = [d for d in _dirs if d not in ('.venv', 'sandbox')]  # the Python and this sandbox\n"
        "        found.extend(os.path.join(_root, f) for f in _files)\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "try:\n"
        "    import tasks.bandit.data\n"
        "    found.append('imported tasks.bandit.data')\n"
        "except ImportError:\n"
        "    pass\n"
        "raise RuntimeError('PROBE ' + repr(found))\n"
    )
    result = evaluate(sandbox, with_prelude(probe))
    assert result.outcome is Outcome.CRASHED
    match = re.search(r"PROBE (\[.*\])", result.error)
    assert match, result.error
    assert match.group(1) == "[]", match.group(1)


def test_the_tracing_stage_is_sent_shapes_and_no_data():
    import numpy as np

    from sandbox.staged import tracing_context

    prepared = prepare(TASK, None, {})
    payload = tracing_context(build_context(prepared.task, prepared.splits)).payload
    assert set(payload) == {"function_name", "inputs", "platforms"}
    assert payload["inputs"] == ["float32[8]", "int32", "float32"]
    assert not any(isinstance(value, np.ndarray) for value in payload.values())


def test_a_computation_that_loops_forever_times_out_in_the_trusted_worker(sandbox):
    # lax.while_loop has a forward derivative only, which is what this task's fit (2 parameters) uses
    body = "spin = jax.lax.while_loop(lambda c: c < jnp.inf, lambda c: c + 1.0, reward)"
    source = with_prelude("", body).replace("logits = params[\"beta\"] * q",
                                             "logits = params[\"beta\"] * q + 0.0 * spin")
    result = evaluate(sandbox, source)
    assert result.outcome is Outcome.TIMEOUT, result
    assert evaluate(sandbox, SEED, job_id=2).outcome is Outcome.OK  # the scorer was replaced and works


def test_a_computation_that_asks_for_50_gb_ends_out_of_memory(sandbox):
    body = "huge = jnp.cumsum(jnp.broadcast_to(reward, (12_500_000_000,)))"
    source = with_prelude("", body).replace("logits = params[\"beta\"] * q",
                                             "logits = params[\"beta\"] * q + 0.0 * huge[-1]")
    result = evaluate(sandbox, source)
    assert result.outcome in (Outcome.OUT_OF_MEMORY, Outcome.CRASHED), result
    assert_not_above_honest(result)
    assert evaluate(sandbox, SEED, job_id=2).outcome is Outcome.OK


def test_a_host_callback_in_the_model_is_not_scored(sandbox):
    body = "q = q + jax.pure_callback(lambda x: x, jax.ShapeDtypeStruct((), jnp.float32), q[0], vmap_method='sequential')"
    result = evaluate(sandbox, with_prelude("", body))
    assert result.outcome in (Outcome.CRASHED, Outcome.INVALID_OUTPUT), result
    assert not result.scores


def test_a_candidate_without_readable_params_is_invalid_without_running(sandbox):
    result = evaluate(sandbox, SEED.replace('PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}',
                                            'PARAMS = {"alpha": (1.0, 0.0)}'))
    assert result.outcome is Outcome.INVALID_OUTPUT
    assert "alpha" in result.error


def test_a_run_whose_llm_answers_with_patches_stores_honest_scores(small_bandit_task: Path, tmp_path: Path):
    """Through a real `discover run` against a loopback LLM server that answers with the probe's two-line patch
    (`m = numpy; m.exp = lambda x: 0.999`, which once made every program store 0.999), with the default static
    check on: every stored program has an outcome, and no score is above what the model earns honestly."""
    import subprocess
    import sys

    from tests.llm_server import LLMServer, vary_best_shot

    def patched(request) -> str:
        return vary_best_shot(request).replace("```python\n", "```python\nimport numpy\nm = numpy\n"
                                                "m.exp = lambda x: 0.999\n", 1)

    db = tmp_path / "run.db"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    with LLMServer(answer=patched) as server:
        run = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(small_bandit_task), "--db", str(db),
                              "--max-evals", "4", "--workers", "1", "--runner", "local", "--proposer", "openai",
                              "--model", "test-model", "--base-url", server.openai_base_url, "--json"],
                             capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    import sqlite3

    rows = sqlite3.connect(db).execute("select proposer, outcome, score, source from programs order by id").fetchall()
    seed_score = rows[0][2]
    patched_rows = [row for row in rows if "m.exp" in row[3]]
    assert patched_rows, rows
    assert all(outcome for _, outcome, _, _ in rows)
    for proposer, outcome, score, _ in patched_rows:
        assert outcome in {o.name for o in Outcome}
        assert score is None or score <= seed_score + 1e-3, (outcome, score, seed_score)
