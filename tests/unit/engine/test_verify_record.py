"""What `discover verify` and the report say about recovery sets whose refit failed."""

from engine.verify import recovery_failures


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
