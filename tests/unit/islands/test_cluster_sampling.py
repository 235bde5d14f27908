"""The sampling algorithm: temperature schedule, cluster softmax, length preference, island choice."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.unit.islands.islands_helpers import candidate, open_database, source
from islands.sampling import Cluster, Island, Member, cluster_temperature, softmax

# Upper 0.1% points of the chi-square distribution, by degrees of freedom.
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 9: 27.88}


def chi_square(counts: Counter, expected: dict, draws: int) -> float:
    return sum((counts.get(k, 0) - draws * p) ** 2 / (draws * p) for k, p in expected.items())


def test_softmax_matches_the_formula() -> None:
    logits = np.array([0.0, 0.1, 0.3])
    expected = np.exp(logits / 0.1) / np.exp(logits / 0.1).sum()
    np.testing.assert_allclose(softmax(logits, 0.1), expected, rtol=1e-12)
    np.testing.assert_allclose(softmax(np.array([1e6, 1e6 - 1]), 1e-5), [1.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="finite"):
        softmax(np.array([0.0, np.inf]), 1.0)


def test_temperature_schedule_values() -> None:
    values = [cluster_temperature(n, 0.1, 5) for n in range(7)]
    np.testing.assert_allclose(values, [0.1, 0.08, 0.06, 0.04, 0.02, 0.1, 0.08])
    assert cluster_temperature(29_999, 0.1, 30_000) == pytest.approx(0.1 / 30_000)
    assert cluster_temperature(30_000, 0.1, 30_000) == 0.1


def test_island_temperature_counts_registrations_on_the_island() -> None:
    database = open_database(None, num_islands=2, cluster_sampling_temperature_period=4)
    database.register_seed(candidate(0.0))  # registered once on each island
    assert [i["temperature"] for i in database.island_snapshot()] == pytest.approx([0.075, 0.075])
    for value in (1.0, 2.0, 3.0):
        database.register(candidate(value, island_id=0))
    snapshot = database.island_snapshot()
    assert [i["num_programs"] for i in snapshot] == [4, 1]
    assert [i["temperature"] for i in snapshot] == pytest.approx([0.1, 0.075])
    database.register(candidate(4.0, island_id=0, outcome="TIMEOUT"))  # failed: not registered on the island
    assert database.island_snapshot()[0]["num_programs"] == 4


def test_length_preference_probabilities() -> None:
    cluster = Cluster(key=("scores", (1.0,)))
    for program_id, length in [(1, 100), (2, 150), (3, 200), (4, 200)]:
        cluster.add(Member(program_id, cluster.key, 1.0, length))
    weights = np.exp(-np.array([0, 50, 100, 100]) / (100 + 1e-6))
    expected = dict(zip([1, 2, 3, 4], weights / weights.sum()))
    assert cluster.probabilities("range") == pytest.approx(expected)
    published = np.exp(-np.array([0, 50, 100, 100]) / (200 + 1e-6))
    assert cluster.probabilities("max") == pytest.approx(dict(zip([1, 2, 3, 4], published / published.sum())))

    rng = np.random.default_rng(0)
    draws = 10_000
    counts = Counter(cluster.sample(rng) for _ in range(draws))
    assert chi_square(counts, expected, draws) < CHI2_999[3]
    assert counts[1] > counts[2] > counts[3]


def test_cluster_draws_follow_the_tempered_softmax() -> None:
    island = Island(0, temperature_init=0.1, temperature_period=30_000)
    scores = [0.0, 0.05, 0.1]
    for program_id, score in enumerate(scores, start=1):
        island.register(Member(program_id, ("scores", (score,)), score, 100))
    temperature = 0.1 * (1 - 3 / 30_000)
    assert island.temperature == pytest.approx(temperature)
    expected_array = np.exp(np.array(scores) / temperature) / np.exp(np.array(scores) / temperature).sum()
    np.testing.assert_allclose(island.cluster_probabilities(), expected_array)

    rng = np.random.default_rng(1)
    draws = 10_000
    counts = Counter(island.sample(rng, functions_per_prompt=1)[0][0] for _ in range(draws))
    assert chi_square(counts, dict(zip([1, 2, 3], expected_array)), draws) < CHI2_999[2]


def test_database_draws_islands_uniformly_and_clusters_by_softmax() -> None:
    database = open_database(None, num_islands=10, functions_per_prompt=1)
    database.register_seed(candidate(0.0))
    high = database.register(candidate(0.1, island_id=3))
    draws = 10_000
    islands, on_island_3 = Counter(), Counter()
    for _ in range(draws):
        sample = database.sample()
        islands[sample.island_id] += 1
        if sample.island_id == 3:
            on_island_3[sample.programs[0].id] += 1
    assert chi_square(islands, {i: 0.1 for i in range(10)}, draws) < CHI2_999[9]
    temperature = 0.1 * (1 - 2 / 30_000)
    p_high = 1 / (1 + np.exp(-0.1 / temperature))
    n3 = islands[3]
    assert chi_square(on_island_3, {high.id: p_high, 1: 1 - p_high}, n3) < CHI2_999[1]


def test_prompt_has_two_programs_sorted_best_last() -> None:
    database = open_database(None, num_islands=1)
    database.register_seed(candidate(0.0))
    assert len(database.sample().programs) == 1  # one cluster: one program
    for index in range(20):
        database.register(candidate(0.01 * (index + 1)))
    for _ in range(200):
        sample = database.sample()
        assert len(sample.programs) == 2
        scores = [program.score for program in sample.programs]
        assert scores == sorted(scores)


def test_same_seed_same_draws_different_seed_different_draws() -> None:
    def draws(seed: int) -> list[tuple[int, tuple[int, ...]]]:
        database = open_database(None, seed=seed, num_islands=3)
        database.register_seed(candidate(0.0))
        for index in range(30):
            database.register(candidate(0.001 * index, island_id=index % 3))
        return [(s.island_id, tuple(p.id for p in s.programs)) for s in (database.sample() for _ in range(50))]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_shorter_programs_are_preferred_inside_a_cluster() -> None:
    database = open_database(None, num_islands=1, functions_per_prompt=1)
    # Same per-test scores: one cluster. Comments change the length but not the behaviour.
    database.register_seed(candidate(1.0, score=1.0, source=source(1.0)))
    long = database.register(candidate(2.0, score=1.0, source=source(2.0, padding=400)))
    counts = Counter(database.sample().programs[0].id for _ in range(4000))
    assert counts[1] > 2 * counts[long.id]


def test_failed_programs_are_never_prompt_examples() -> None:
    database = open_database(None, num_islands=2)
    database.register_seed(candidate(0.0))
    failed = [
        database.register(candidate(1.0, score=9.0, outcome="TIMEOUT", island_id=0)),
        database.register(candidate(2.0, score=None, island_id=0)),
        database.register(candidate(3.0, score=float("inf"), island_id=1)),
        database.register(candidate(4.0, score=float("nan"), island_id=1)),
        database.register(candidate(5.0, score=1.0, scores_per_test={"a": float("nan")}, island_id=1)),
    ]
    failed_ids = {program.id for program in failed}
    for _ in range(300):
        assert not failed_ids & {program.id for program in database.sample().programs}
    assert [p.id for p in database.all_programs()] == [1, 2, 3, 4, 5, 6]
    assert failed[3].score is None  # NaN is stored as None (SQLite has no NaN)
    assert database.num_evaluations == 5


def test_behaviour_signature_keys_clusters() -> None:
    database = open_database(None, num_islands=1, cluster_by="behaviour")
    database.register_seed(candidate(0.0, behaviour=(1.0, 2.0)))
    database.register(candidate(0.5, behaviour=(1.0, 2.0)))
    database.register(candidate(0.7, behaviour=(3.0,)))
    database.register(candidate(0.9))  # no behaviour: keyed by its scores
    clusters = database.island_snapshot()[0]["clusters"]
    assert len(clusters) == 3
    same = clusters[repr(("behaviour", (1.0, 2.0)))]
    assert same == (0.5, (1, 2))  # the cluster score is the best of its programs


def test_cluster_score_is_the_declared_reduction_of_per_test_scores() -> None:
    tests = {"a": 1.0, "b": 2.0, "c": 6.0}
    for reduction, expected in [("mean", 3.0), ("median", 2.0), ("min", 1.0), ("max", 6.0), ("last", 6.0)]:
        database = open_database(None, num_islands=1, cluster_score=reduction)
        database.register_seed(candidate(0.0, score=0.0, scores_per_test=tests))
        [(score, _ids)] = database.island_snapshot()[0]["clusters"].values()
        assert score == expected, reduction


def test_scores_equal_after_rounding_share_a_cluster() -> None:
    database = open_database(None, num_islands=1, signature_decimals=3)
    database.register_seed(candidate(0.0, scores_per_test={"a": 0.12341}))
    database.register(candidate(1.0, scores_per_test={"a": 0.12339}))
    database.register(candidate(2.0, scores_per_test={"a": 0.1236}))
    assert sorted(len(ids) for _, ids in database.island_snapshot()[0]["clusters"].values()) == [1, 2]


def test_bucketed_draws_match_the_softmax_as_temperature_falls_and_scores_rise() -> None:
    rng = np.random.default_rng(5)
    island = Island(0, temperature_init=0.1, temperature_period=40)
    scores = list(np.round(rng.uniform(0.0, 0.3, size=30), 4))
    for program_id, score in enumerate(scores):
        island.register(Member(program_id, ("scores", (program_id,)), float(score), 100))
    # A cluster's score rises when a better program joins it: it moves to another bucket.
    island.register(Member(100, ("scores", (3,)), 0.35, 100))
    draws = 6000
    for _ in range(3):  # 31, 32, 33 registrations: three temperatures, the buckets are rebuilt as T falls
        expected = dict(enumerate(island.cluster_probabilities()))
        counts = Counter(index for _ in range(draws) for index in island._buckets.draw(
            island._scores, island.best_score, island.temperature, rng, 1))  # fmt: skip
        kept = {k: p for k, p in expected.items() if p * draws >= 5}  # chi-square needs expected counts >= 5
        rare = sum(counts[k] for k in expected if k not in kept)
        assert chi_square(counts, kept, draws) < 60.0 and rare <= 5 * len(expected)
        island.register(Member(200 + _, ("scores", (0,)), 0.0, 100))


def test_clusters_far_below_the_best_are_never_drawn() -> None:
    island = Island(0, temperature_init=0.01, temperature_period=30_000)
    island.register(Member(1, ("scores", (1.0,)), 1.0, 100))
    island.register(Member(2, ("scores", (0.0,)), 0.0, 100))  # 100 temperatures below: probability e^-100
    rng = np.random.default_rng(0)
    assert {island.sample(rng, 2)[0][0] for _ in range(200)} == {1}
