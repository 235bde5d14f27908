"""The typed task result: grouped fitted parameters, one set of timing keys, and plain data across processes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.task.results import POOLED, TaskResult, describe_fitted, fitted_groups, grouped_params, pooled_params
from sandbox.zygote import validate


def test_a_result_crosses_the_worker_as_plain_data_and_reads_back_the_same():
    result = TaskResult(
        score=np.float32(0.75), train_score=0.8,
        fitted_params=grouped_params({"drift": np.array([1.5, 2.5]), "bound": np.array([0.9, 1.1])}, ["B", "N"]),
        scores_per_test={"B_coh0.128": -1.2}, timings={"compile_s": 0.2, "fit_s": 0.5, "score_s": 0.1},
        extra_scores={"n_train_observations": 100.0}, details={"fit_stages": {"B": "forced"}})
    checked = validate(result, {})  # what the trusted scoring worker does with the score's return
    assert checked["outcome"] == "OK"
    json.dumps(checked)  # plain data only
    back = TaskResult.from_record(checked["scores"], checked["details"], checked["timings"])
    assert back.fitted_params == {"B": {"drift": 1.5, "bound": 0.9}, "N": {"drift": 2.5, "bound": 1.1}}
    assert back.score == pytest.approx(0.75) and back.train_score == 0.8
    assert back.extra_scores == {"n_train_observations": 100.0} and back.details == {"fit_stages": {"B": "forced"}}
    assert back.timings == {"compile_s": 0.2, "fit_s": 0.5, "score_s": 0.1}
    assert back.values_of("drift") == [1.5, 2.5]


def test_a_non_finite_score_is_invalid_output_not_a_crash():
    checked = validate(TaskResult(score=float("nan"), fitted_params=pooled_params({"a": 1.0})), {})
    assert checked["outcome"] == "INVALID_OUTPUT" and "'score' must be a finite float" in checked["error"]


def test_malformed_results_are_refused_where_the_task_builds_them():
    with pytest.raises(TypeError, match="group 'alpha' maps to float"):
        TaskResult(score=0.5, fitted_params={"alpha": 0.3})  # flat: use pooled_params
    with pytest.raises(ValueError, match="timing keys end in '_s'"):
        TaskResult(score=0.5, fitted_params={}, timings={"score": 0.1})
    with pytest.raises(ValueError, match="fitted_params: a TaskResult field"):
        TaskResult(score=0.5, fitted_params={}, details={"fitted_params": {}})


def test_stored_parameters_of_older_databases_and_plain_entries_read_as_one_pooled_group():
    assert fitted_groups({"alpha": 0.3, "beta": 2.0}) == {POOLED: {"alpha": 0.3, "beta": 2.0}}
    assert fitted_groups({"B": {"k": 1.0}}) == {"B": {"k": 1.0}}
    assert fitted_groups(None) == {} and fitted_groups({}) == {} and fitted_groups([1, 2]) == {}
    assert describe_fitted({"alpha": 0.32651, "beta": 8.2}) == "alpha=0.327, beta=8.2"
    assert describe_fitted({}) == ""


def test_a_verification_record_carries_the_engines_recovery_figures_checks_and_posterior():
    from engine.task.results import TaskVerification

    class Recovery:  # what engine.fit.parameter_recovery returns, as far as the record goes
        def record(self):
            return {"recovery": {"alpha": 0.9}, "recovery_pairs": {"alpha": [[0.1, 0.12]]}}

    verification = TaskVerification(score=np.float64(0.7), fitted_params={"B": {"alpha": np.float32(0.25)}},
                                    recovery=Recovery(), figures=[{"title": "curve"}],
                                    checks=[{"name": "gain", "passed": True, "detail": ""}],
                                    posterior={"posterior": {"B": {"alpha": [0.2, 0.25, 0.3]}}})
    checked = validate(verification, {})
    assert checked["outcome"] == "OK"
    assert checked["details"]["fitted_params"] == {"B": {"alpha": 0.25}}
    assert checked["details"]["recovery"] == {"alpha": 0.9} and checked["details"]["figures"] == [{"title": "curve"}]
    assert checked["details"]["posterior"] == {"B": {"alpha": [0.2, 0.25, 0.3]}} and checked["details"]["checks"][0]["passed"]
