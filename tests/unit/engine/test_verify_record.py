"""What `discover verify` and the report say about parameter recovery (failed sets, the line, the figure) and about
a task's pass/fail checks."""

import pytest

from engine.verification.figures import validate_figure
from engine.verification.verify import (check_lines, fit_spread, posterior_line, recovery_failures, recovery_figure,
                                        recovery_redraws, recovery_summary, task_checks)


def test_no_failed_sets_says_nothing():
    assert recovery_failures({"recovery": {"alpha": 0.9}, "recovery_pairs": {"alpha": [[0.1, 0.1]] * 6}}) == ""
    assert recovery_failures({}) == ""  # records stored before failed sets were recorded


def test_failed_sets_are_counted_next_to_the_ones_used():
    record = {"recovery_failed_sets": [0, 2], "recovery_pairs": {"alpha": [[0.1, 0.1]] * 4}}
    assert recovery_failures(record) == (
        "2 of 6 simulated parameter sets could not be refitted (no restart gave a finite likelihood; sets [0, 2]); "
        "the correlations use the other 4."
    )
    record = {"recovery_failed_sets": [0, 2, 3, 5], "recovery_pairs": {"alpha": [[0.1, 0.1]] * 2}}
    assert recovery_failures(record).endswith("the 2 left are too few for a correlation.")


def test_redrawn_sets_are_named_with_why_their_first_draws_could_not_be_measured():
    assert recovery_redraws({"recovery_redrawn": {}}) == "" and recovery_redraws({}) == ""
    record = {"recovery_pairs": {"alpha": [[0.1, 0.1]] * 6},
              "recovery_redrawn": {"4": ["fires at 636 Hz in a sweep, past the 125 Hz the score measures"]}}
    assert recovery_redraws(record) == (
        "1 of 6 simulated parameter sets was drawn again: the score cannot measure the data of the discarded draws "
        "(set 4: fires at 636 Hz in a sweep, past the 125 Hz the score measures)."
    )
    record = {"recovery_pairs": {"alpha": [[0.1, 0.1]] * 5}, "recovery_failed_sets": [0],
              "recovery_redrawn": {"1": ["a", "b"], "2": ["c"]}, "recovery_unmeasured_sets": [1]}
    assert recovery_redraws(record) == (
        "2 of 6 simulated parameter sets were drawn again: the score cannot measure the data of the discarded draws "
        "(set 1: a; drawn 3 times, and the last draw, kept, could not be measured either; set 2: c)."
    )
    assert recovery_redraws({"recovery_redrawn": {"1": 5}, "recovery_unmeasured_sets": "x"}) == (
        "1 simulated parameter set was drawn again: the score cannot measure the data of the discarded draws "
        "(set 1: 5)."
    )  # a tampered record still gives a sentence


def test_the_recovery_line_marks_circular_correlations():
    record = {"recovery": {"kappa": 0.96, "pref_deg": 0.91}, "recovery_circular": ["pref_deg"]}
    assert recovery_summary(record) == (
        "parameter recovery (Pearson r, generating vs refitted): kappa=0.96, pref_deg=0.91 (circular r)"
    )
    assert recovery_summary({"recovery": {"alpha": 0.5}}).endswith("alpha=0.50")  # records from before angles
    assert recovery_summary({}) == ""
    # too few refitted sets for a correlation: NaN in the run, null once stored as JSON
    assert recovery_summary({"recovery": {"alpha": None, "beta": float("nan")}}).endswith("alpha=n/a, beta=n/a")


def test_the_recovery_figure_puts_every_parameter_on_one_standardized_scale():
    record = {
        "recovery": {"alpha": 1.0, "beta": float("nan"), "gain": 0.2},
        "recovery_pairs": {
            "alpha": [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]],
            "beta": [[5.0, 4.0], [5.0, 6.0], [5.0, 5.0]],  # never varied: nothing to standardize by
            "gain": [[100.0, 150.0], [200.0, 120.0], [300.0, 180.0]],
        },
    }
    figure = recovery_figure(record)
    assert not validate_figure(figure)
    labels = [series["label"] for series in figure["series"]]
    assert labels == ["alpha (r 1.00)", "gain (r 0.20)", "recovered = generating"]
    alpha = figure["series"][0]
    assert alpha["x"] == pytest.approx(alpha["y"]) and alpha["x"][0] == pytest.approx(-1.2247, abs=1e-4)
    assert figure["series"][1]["y"] == pytest.approx([-0.6124, -0.9798, -0.2449], abs=1e-4)
    assert recovery_figure({"recovery_pairs": {}}) is None and recovery_figure({}) is None


def test_task_checks_are_counted_and_failures_are_loud():
    checks = task_checks([{"name": "f-I gain, cell B6", "passed": False, "detail": "ratio 0.00"},
                          {"name": "f-I gain, cell B8", "passed": True, "detail": "ratio 0.94"}])
    assert check_lines({"checks": checks}) == [
        "task checks: 1 of 2 FAILED", "FAILED f-I gain, cell B6: ratio 0.00", "passed f-I gain, cell B8: ratio 0.94"]
    assert check_lines({"checks": checks[1:]})[0] == "task checks: all 1 passed"
    assert check_lines({}) == [] and task_checks(None) == []  # records from before checks; tasks without them


def test_a_malformed_check_is_a_failed_check_never_a_pass():
    checks = task_checks([{"name": "gain", "passed": "yes"}, "ok"])
    assert [check["passed"] for check in checks] == [False, False]
    assert "malformed check" in checks[0]["detail"] and "expected {name: str, passed: bool" in checks[1]["detail"]
    assert task_checks({"name": "gain", "passed": True}) == [{
        "name": "task checks", "passed": False,
        "detail": "the task's verify returned checks of type dict; expected a list"}]


def test_the_report_lists_the_task_checks_under_a_heading_that_counts_failures():
    from engine.verification.report import _program_section
    from islands.program import Program

    program = Program(id=7, island_id=0, source="def f(x):\n    return x\n", parent_ids=(), outcome="OK", score=0.5,
                      scores_per_test={}, error="", fitted_params={}, timings={}, extra_scores={}, behaviour=None,
                      proposer="mutator", tokens=0, cost_usd=0.0, canonical_hash="h", num_params=0, ast_size=3,
                      created_at=0.0)
    record = {"test_scores": {}, "figures": [],
              "checks": task_checks([{"name": "f-I gain, cell B6", "passed": False, "detail": "ratio 0.00 < 0.50"}])}
    html_text = _program_section(program, {}, record)
    expected = "<h3>Task checks: 1 of 1 FAILED</h3><ul><li>FAILED f-I gain, cell B6: ratio 0.00 &lt; 0.50</li></ul>"
    assert expected in html_text
    record["recovery_redrawn"] = {"4": ["fires at <b>640</b> Hz"]}  # escaped, like every value from the database
    expected = "the discarded draws (set 4: fires at &lt;b&gt;640&lt;/b&gt; Hz)."
    assert expected in _program_section(program, {}, record)


def test_the_fit_spread_leaves_failed_fits_out_and_needs_two():
    mean, sd, n = fit_spread({"score": -0.52, "scores_by_fit_seed": [-0.52, None, -1.25, -0.60]})
    assert n == 3 and mean == pytest.approx(-0.79) and sd == pytest.approx(0.4003748, rel=1e-6)
    assert fit_spread({"score": -0.52, "scores_by_fit_seed": [-0.52, None]}) is None
    assert fit_spread({"score": -0.52}) is None  # verified with one fit, or before fits were repeated


def test_the_report_shows_the_spread_over_fits_next_to_the_run_seeds_score():
    from engine.verification.report import _test_table

    record = {"fit_seeds": [0, 1, 2], "test_scores": {
        "program": {"kind": "discovered", "outcome": "OK", "score": -0.52, "scores_by_fit_seed": [-0.52, -1.25, -0.60]},
        "adex": {"kind": "ground_truth", "outcome": "OK", "score": -0.55, "scores_by_fit_seed": [-0.55, -0.50, None]},
    }}
    table = _test_table(record)
    assert "<th>mean ± s.d. over 3 fits</th>" in table
    assert "<td>program</td><td>discovered</td><td>-0.5200</td><td>-0.7900 ± 0.4004</td>" in table
    assert "<td>adex</td><td>ground_truth</td><td>-0.5500</td><td>-0.5250 ± 0.0354</td>" in table


def test_the_posterior_line_gives_median_and_interval_and_survives_a_tampered_record():
    record = {"posterior": {"alpha": [0.27, 0.31, 0.36], "beta": [7.76, 8.21, 8.64]},
              "posterior_diagnostics": {"r_hat_max": 1.004, "divergences": 0.0, "draws": 600}}
    assert posterior_line(record) == ("posterior (uniform prior on the bounds; median [5 %, 95 %]): "
                                      "alpha=0.31 [0.27, 0.36], beta=8.21 [7.76, 8.64]; 600 draws, "
                                      "r-hat at most 1.00, 0 divergences")
    assert posterior_line({}) == ""
    tampered = {"posterior": {"alpha": "<script>", "beta": [1, 2]}, "posterior_diagnostics": {"draws": "x"}}
    assert "alpha=n/a, beta=n/a" in posterior_line(tampered) and "? draws" in posterior_line(tampered)


def test_the_posterior_line_names_each_group_of_a_grouped_posterior():
    record = {"posterior": {"B": {"k": [9.0, 11.0, 13.5]}, "N": {"k": [5.0, 6.0, 7.0]}}}
    assert posterior_line(record) == ("posterior (uniform prior on the bounds; median [5 %, 95 %]): "
                                      "B: k=11 [9, 13.5]; N: k=6 [5, 7]")
    pooled = {"posterior": {"all": {"alpha": [0.27, 0.31, 0.36]}}}
    assert posterior_line(pooled).endswith("): alpha=0.31 [0.27, 0.36]")


def test_a_task_verification_stores_its_posterior_grouped_like_its_fitted_parameters():
    from engine.fit import combine_posteriors
    from engine.task.results import TaskVerification

    one_fit = {"posterior": {"alpha": [0.2, 0.3, 0.4]}, "posterior_diagnostics": {"r_hat_max": 1.01, "ess_min": 90.0}}
    pooled = TaskVerification(0.5, {"all": {"alpha": 0.3}}, posterior=one_fit).record()
    assert pooled["posterior"] == {"all": {"alpha": [0.2, 0.3, 0.4]}}
    other = {"posterior": {"alpha": [0.5, 0.6, 0.7]}, "posterior_diagnostics": {"r_hat_max": 1.03, "ess_min": 40.0}}
    merged = combine_posteriors({"B": one_fit, "N": other})
    grouped = TaskVerification(0.5, {"B": {"alpha": 0.3}, "N": {"alpha": 0.6}}, posterior=merged).record()
    assert grouped["posterior"] == {"B": {"alpha": [0.2, 0.3, 0.4]}, "N": {"alpha": [0.5, 0.6, 0.7]}}
    assert grouped["posterior_diagnostics"] == {"r_hat_max": 1.03, "ess_min": 40.0}


def test_the_posterior_line_of_smc_abc_names_its_particles():
    record = {"posterior": {"k_B": [9.0, 11.0, 13.5]},
              "posterior_diagnostics": {"method": "smc-abc", "particles": 500, "ess_min": 231.7}}
    assert posterior_line(record).endswith("k_B=11 [9, 13.5]; SMC-ABC, 500 weighted particles (effective 231, the "
                                           "fewest of the groups)")
