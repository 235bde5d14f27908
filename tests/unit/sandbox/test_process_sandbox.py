"""ProcessSandbox semantics: how each end of a candidate is classified, with real worker processes."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from sandbox import Job, Limits, Outcome, ProcessSandbox, SandboxError, TaskContext
from sandbox import isolation, process

HERE = Path(__file__).parent


def context(**overrides) -> TaskContext:
    values = dict(entry="entry_call.py:score", payload={"x": 2.0}, function_name="agent",
                  allowed_imports=("math", "numpy", "jax", "optax"), root=str(HERE),
                  limits=Limits(timeout_s=20, memory_mb=512, max_output_kb=4))
    values.update(overrides)
    return TaskContext(**values)


@pytest.fixture(scope="module")
def sandbox():
    with ProcessSandbox(context()) as sandbox:
        yield sandbox


def run(sandbox: ProcessSandbox, source: str):
    return sandbox.run(Job(job_id=7, source=source))


def test_ok_scores_details_timings_and_output(sandbox) -> None:
    result = run(sandbox, "def agent(x):\n    print('hello')\n    return {'score': x * 1.5, 'bic': 3.0, "
                          "'n_params': 2, 'fitted_params': {'alpha': 0.1}, 'timings': {'fit': 0.25}}\n")
    assert result.outcome is Outcome.OK, result.error
    assert result.job_id == 7
    assert result.scores == {"score": 3.0, "bic": 3.0}
    assert result.details == {"n_params": 2, "fitted_params": {"alpha": 0.1}}
    assert result.timings["fit"] == 0.25
    assert {"startup", "wall", "entry"} <= set(result.timings)
    assert result.output == "hello\n"
    assert result.error == ""
    assert 0 < result.wall_time_s == result.timings["wall"]


def test_a_jax_candidate_runs_in_the_forked_child(sandbox) -> None:
    result = run(sandbox, "import jax\nimport jax.numpy as jnp\n"
                          "def agent(x):\n    return jax.jit(lambda v: jnp.sum(v * x))(jnp.ones(3))\n")
    assert result.outcome is Outcome.OK, result.error
    assert result.scores["score"] == 6.0


@pytest.mark.parametrize("value, message", [
    ("float('nan')", "'score' must be a finite float; got nan"),
    ("float('inf')", "'score' must be a finite float; got inf"),
    ("'high'", "'score' must be a finite float; got 'high'"),
    ("True", "'score' must be a finite float; got True"),
])
def test_a_score_that_is_not_a_finite_float_is_invalid(sandbox, value: str, message: str) -> None:
    result = run(sandbox, f"def agent(x):\n    return {value}\n")
    assert result.outcome is Outcome.INVALID_OUTPUT
    assert message in result.error
    assert result.scores == {}


def test_a_mapping_without_score_or_not_a_mapping_is_invalid(sandbox) -> None:
    assert "returned no 'score'; keys: bic" in run(sandbox, "def agent(x):\n    return {'bic': 1.0}\n").error
    result = sandbox.run(Job(1, "def agent(x):\n    return {'score': [1.0]}\n"))
    assert result.outcome is Outcome.INVALID_OUTPUT


def test_a_value_error_from_the_entry_is_invalid_output(sandbox) -> None:
    result = run(sandbox, "def agent(x):\n    raise ValueError('model returned p of shape (3,); expected (412,)')\n")
    assert result.outcome is Outcome.INVALID_OUTPUT
    assert result.error == "ValueError: model returned p of shape (3,); expected (412,)"


def test_other_exceptions_crash_with_the_traceback_tail(sandbox) -> None:
    result = run(sandbox, "def helper():\n    return 1 / 0\ndef agent(x):\n    return helper()\n")
    assert result.outcome is Outcome.CRASHED
    assert "ZeroDivisionError: division by zero" in result.error
    assert 'File "candidate.py", line 2, in helper' in result.error
    assert "return 1 / 0" in result.error


def test_a_missing_function_is_named(sandbox) -> None:
    result = run(sandbox, "def model(x):\n    return 1.0\n")
    assert result.outcome is Outcome.INVALID_OUTPUT
    assert result.error == "candidate defines no function 'agent'; it defines: model"


def test_memory_error_is_out_of_memory(sandbox) -> None:
    result = run(sandbox, "import numpy as np\ndef agent(x):\n    return float(np.ones(2 ** 31).sum())\n")
    assert result.outcome is Outcome.OUT_OF_MEMORY


def test_syntax_and_forbidden_never_start_a_process(sandbox) -> None:
    started = sandbox.workers_started
    assert run(sandbox, "def agent(x)\n").outcome is Outcome.SYNTAX_ERROR
    forbidden = run(sandbox, "import os\ndef agent(x):\n    return 1.0\n")
    assert forbidden.outcome is Outcome.FORBIDDEN
    assert "line 1: import of 'os' is not allowed" in forbidden.error
    assert sandbox.workers_started == started


def test_output_is_truncated_to_max_output_kb(sandbox) -> None:
    result = run(sandbox, "def agent(x):\n    for i in range(10000):\n        print('line', i)\n    return 1.0\n")
    assert result.outcome is Outcome.OK
    assert result.output.startswith("line 0\nline 1\n")
    assert "[output truncated:" in result.output
    assert len(result.output) < 4 * 1024 + 200


def test_candidate_module_has_its_source(sandbox) -> None:
    source = "import math\ndef agent(x):\n    return math.pi\n"
    with ProcessSandbox(context(entry="entry_source.py:score"), preload=()) as own:
        result = own.run(Job(1, source))
    assert result.outcome is Outcome.OK, result.error
    assert result.details["source"] == source


def test_the_worker_is_replaced_after_max_jobs(sandbox) -> None:
    with ProcessSandbox(context(), max_jobs_per_worker=2, preload=()) as own:
        for job_id in range(3):
            assert own.run(Job(job_id, "def agent(x):\n    return x\n")).outcome is Outcome.OK
        assert own.workers_started == 2


def test_a_prestarted_worker_runs_the_next_job_and_its_start_counts_as_startup() -> None:
    with ProcessSandbox(context(), preload=()) as own:
        own.prestart()
        assert own.warm
        result = own.run(Job(1, "def agent(x):\n    return x\n"))
        assert result.outcome is Outcome.OK, result.error
        # the worker prestart() spawned served the job: none was started again (it would have been, had the
        # worker died with a thread that spawned it)
        assert own.workers_started == 1
        assert result.timings["startup"] > 0


def test_a_prestarted_worker_that_cannot_start_is_reported_by_the_next_job() -> None:
    with ProcessSandbox(context(entry="entry_jax_at_import.py:score"), preload=()) as own:
        own.prestart()
        with pytest.raises(SandboxError, match="could not load the task"):
            own.run(Job(1, "def agent(x):\n    return x\n"))


def test_bad_entries_raise_sandbox_errors() -> None:
    with pytest.raises(SandboxError, match="expected 'path/to/score.py:function'"):
        ProcessSandbox(context(entry="entry_call.py"))
    with pytest.raises(SandboxError, match="does not exist"):
        ProcessSandbox(context(entry="nope.py:score"))
    with ProcessSandbox(context(entry="entry_call.py:nope"), preload=()) as broken:
        with pytest.raises(SandboxError, match="has no function 'nope'. Found: score"):
            broken.run(Job(1, "def agent(x):\n    return 1.0\n"))


def test_an_entry_that_starts_jax_at_import_is_refused() -> None:
    with ProcessSandbox(context(entry="entry_jax_at_import.py:score")) as broken:
        with pytest.raises(SandboxError, match="JAX backend was initialised"):
            broken.run(Job(1, "def agent(x):\n    return 1.0\n"))


def test_a_closed_sandbox_refuses_jobs() -> None:
    own = ProcessSandbox(context())
    own.close()
    own.close()
    with pytest.raises(SandboxError, match="closed"):
        own.run(Job(1, "def agent(x):\n    return 1.0\n"))


def test_without_bubblewrap_it_falls_back_and_warns_once(monkeypatch, caplog) -> None:
    # bubblewrap is installed here; its absence (macOS, minimal containers) is simulated.
    monkeypatch.setattr(isolation, "find_bwrap", lambda: None)
    monkeypatch.setattr(process, "_warned_no_bwrap", False)
    with caplog.at_level(logging.WARNING, logger="sandbox.process"):
        first, second = ProcessSandbox(context(), preload=()), ProcessSandbox(context(), preload=())
    try:
        assert not first.isolated
        assert sum("bubblewrap ('bwrap') not found" in r.message for r in caplog.records) == 1
        result = first.run(Job(1, "import math\ndef agent(x):\n    return math.sqrt(x)\n"))
        assert result.outcome is Outcome.OK and math.isclose(result.scores["score"], math.sqrt(2.0))
        with pytest.raises(SandboxError, match="use_bwrap=True, but bubblewrap"):
            ProcessSandbox(context(), use_bwrap=True)
    finally:
        first.close()
        second.close()


def test_close_kills_a_running_job_at_once() -> None:
    import threading
    import time

    own = ProcessSandbox(context(), preload=())
    assert own.run(Job(1, "def agent(x):\n    return x\n")).outcome is Outcome.OK
    results = []
    runner = threading.Thread(target=lambda: results.append(own.run(Job(2, "def agent(x):\n    while True:\n"
                                                                            "        pass\n"))))
    runner.start()
    time.sleep(0.5)
    closed_at = time.monotonic()
    own.close()
    runner.join(timeout=10)
    assert time.monotonic() - closed_at < 5
    assert results[0].outcome is Outcome.WORKER_LOST
    assert results[0].error == "the sandbox was closed while the job ran"


def test_a_forged_verdict_cannot_break_the_host(sandbox) -> None:
    forged = ("import os, json\ndef agent(x):\n"
              "    for fd in range(3, 64):\n"
              "        try:\n"
              "            os.write(fd, json.dumps({'outcome': 'OK', 'scores': [1], 'timings': 'x', 'details': 3}).encode())\n"
              "        except OSError:\n"
              "            pass\n"
              "    os._exit(0)\n")
    with ProcessSandbox(context(allowed_imports=("*",)), preload=()) as own:
        result = own.run(Job(1, forged))
        assert result.outcome in (Outcome.INVALID_OUTPUT, Outcome.CRASHED)
        assert result.scores == {}
        assert own.run(Job(2, "def agent(x):\n    return x\n")).scores == {"score": 2.0}


@pytest.mark.parametrize("reply", [{"outcome": "CRASHED"}, {"outcome": "TIMEOUT", "error": " "},
                                   {"outcome": "OK", "scores": {"other": 1.0}}])
def test_a_failure_always_says_something(reply) -> None:
    result = process._result_from_reply(1, reply, startup_s=0.0, wall_s=0.1)
    assert result.outcome is not Outcome.OK
    assert result.error.strip()
