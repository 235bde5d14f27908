"""The seed guard's arithmetic and its messages (the runs that it stops are in tests/integration/test_seed_guard.py)."""

from pathlib import Path

from engine.search.seed_check import seed_drift, seed_failure_message
from sandbox.results import Outcome, RunResult


def test_a_score_within_the_tolerance_or_nothing_expected_is_no_drift():
    assert seed_drift(0.7741, 0.7742, 0.001, "task.yaml") is None
    assert seed_drift(0.7752, 0.7742, 0.001, "task.yaml") is None  # the band's edge is inside
    assert seed_drift(0.1, None, 0.001, "task.yaml") is None


def test_a_drift_says_expected_found_why_and_what_to_do_in_one_sentence():
    drift = seed_drift(0.7512, 0.7742, 0.002, "task.yaml")
    assert drift is not None and round(drift.off_by, 4) == 0.023
    message = drift.message(Path("tasks/bandit/task.yaml"))
    assert message == (
        "tasks/bandit/task.yaml: expected the seed to score 0.7742 ± 0.002 (seed_score), got 0.7512, so the scorer, "
        "the dataset or the environment (e.g. the JAX version) changed; check that change, then update seed_score "
        "in task.yaml, or bump version if scoring changed on purpose, before searching."
    )
    assert message.replace("e.g.", "").count(". ") == 0 and "\n" not in message


def test_a_resumed_run_compares_with_its_stored_seed():
    drift = seed_drift(0.70, 0.7742, 0.002, "database")
    message = drift.message(Path("task.yaml"), Path("runs/a.db"))
    assert message.startswith("runs/a.db: the seed now scores 0.7000, but it scored 0.7742 when this run began")
    assert "start a new database" in message and "\n" not in message


def test_a_score_that_is_not_finite_always_drifts():
    assert seed_drift(float("nan"), 0.5, 1.0, "task.yaml") is not None


def test_a_failed_seed_names_its_outcome_error_and_the_command_that_shows_it():
    result = RunResult(job_id=0, outcome=Outcome.CRASHED, error="RuntimeError: broken seed")
    message = seed_failure_message(result, Path("t/task.yaml"), Path("t/seed.py"))
    assert message.startswith("the seed program t/seed.py did not evaluate: CRASHED (raised an exception")
    assert "RuntimeError: broken seed" in message and "`discover eval t/task.yaml t/seed.py`" in message

