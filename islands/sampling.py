"""Clusters and islands held in memory, and how prompt examples are drawn from them.

This follows the program database of FunSearch (Romera-Paredes et al. 2024, Nature 625:468):
an island draws clusters by a softmax of their scores at a temperature that falls during each period of
registrations, and a cluster draws one of its programs preferring shorter ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Literal

import numpy as np

__all__ = ["Member", "Cluster", "Island", "ScoreBuckets", "softmax", "cluster_temperature"]

LengthNormalisation = Literal["range", "max"]


@dataclass(frozen=True, slots=True)
class Member:
    """What an island needs to know about a successful program.

    Attributes:
        program_id: its id in the store.
        cluster_key: the signature that decides its cluster.
        cluster_score: its per-test scores reduced to one number (higher is better).
        length: characters of its source; shorter programs are preferred inside a cluster.
    """

    program_id: int
    cluster_key: Hashable
    cluster_score: float
    length: int


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Returns softmax(logits / temperature), shape like `logits`; raises ValueError for non-finite logits."""
    if not np.all(np.isfinite(logits)):
        raise ValueError(f"softmax needs finite logits; found {logits[~np.isfinite(logits)][:3]}")
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    weights = np.exp(scaled - scaled.max())
    return weights / weights.sum()


def cluster_temperature(num_programs: int, temperature_init: float, period: int) -> float:
    """Returns T = T0 * (1 - (num_programs mod period) / period), the cluster sampling temperature."""
    return temperature_init * (1.0 - (num_programs % period) / period)


def _draw(weights: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draws `size` indices with replacement, with probabilities proportional to `weights` (non-negative)."""
    cumulative = np.cumsum(weights)
    picks = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
    return np.minimum(picks, len(weights) - 1)


class Cluster:
    """Programs of one island that share a signature.

    Inside a cluster a program is drawn by softmax(-normalised length) at temperature 1, where the normalised
    length is (length - min) / (max - min + 1e-6) ("range") or (length - min) / (max + 1e-6) ("max", the
    published code). Programs of equal length are grouped, so a draw costs time in the number of distinct
    lengths, not in the number of programs.
    """

    __slots__ = ("key", "score", "_ids_by_length", "_cache")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.score = -math.inf
        self._ids_by_length: dict[int, list[int]] = {}
        self._cache: tuple[str, list[list[int]], np.ndarray] | None = None

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._ids_by_length.values())

    def add(self, member: Member) -> None:
        """Adds a program; the cluster score is the best cluster score of its programs."""
        self._ids_by_length.setdefault(member.length, []).append(member.program_id)
        self.score = max(self.score, member.cluster_score)
        self._cache = None

    def program_ids(self) -> list[int]:
        """Returns the ids of the cluster's programs, in ascending order."""
        return sorted(program_id for ids in self._ids_by_length.values() for program_id in ids)

    def probabilities(self, normalisation: LengthNormalisation = "range") -> dict[int, float]:
        """Returns program id -> probability of being drawn (for tests and reports)."""
        groups, weights = self._weights(normalisation)
        total = weights.sum()
        return {pid: float(w / total / len(ids)) for ids, w in zip(groups, weights) for pid in ids}

    def sample(self, rng: np.random.Generator, normalisation: LengthNormalisation = "range") -> int:
        """Draws one program id, preferring shorter programs."""
        groups, weights = self._weights(normalisation)
        ids = groups[int(_draw(weights, rng, 1)[0])] if len(groups) > 1 else groups[0]
        return ids[int(rng.integers(len(ids)))] if len(ids) > 1 else ids[0]

    def _weights(self, normalisation: LengthNormalisation) -> tuple[list[list[int]], np.ndarray]:
        if self._cache is None or self._cache[0] != normalisation:
            lengths = np.fromiter(self._ids_by_length.keys(), dtype=np.float64, count=len(self._ids_by_length))
            groups = list(self._ids_by_length.values())
            counts = np.array([len(ids) for ids in groups], dtype=np.float64)
            low, high = lengths.min(), lengths.max()
            scale = (high - low if normalisation == "range" else high) + 1e-6
            # Each program has weight exp(-normalised length); a group of equal lengths adds its programs' weights.
            self._cache = (normalisation, groups, counts * softmax(-(lengths - low) / scale, 1.0))
        return self._cache[1], self._cache[2]


class Island:
    """A sub-population: clusters keyed by signature, and a count of the programs registered on it."""

    def __init__(self, island_id: int, temperature_init: float, temperature_period: int) -> None:
        self.island_id = island_id
        self.temperature_init = temperature_init
        self.temperature_period = temperature_period
        self.clusters: dict[Hashable, Cluster] = {}
        self.num_programs = 0  # registrations since the island was created or last emptied
        self.best_score = -math.inf
        self.best_program_id: int | None = None
        self.member_ids: set[int] = set()
        self._cluster_list: list[Cluster] = []
        self._index: dict[Hashable, int] = {}
        self._scores = np.empty(16, dtype=np.float64)
        self._buckets = ScoreBuckets()

    @property
    def temperature(self) -> float:
        """The cluster sampling temperature for the next prompt."""
        return cluster_temperature(self.num_programs, self.temperature_init, self.temperature_period)

    def register(self, member: Member) -> None:
        """Adds a program to its cluster, creating the cluster when the signature is new."""
        index = self._index.get(member.cluster_key)
        if index is None:
            index = self._index[member.cluster_key] = len(self._cluster_list)
            self.clusters[member.cluster_key] = cluster = Cluster(member.cluster_key)
            self._cluster_list.append(cluster)
            if index == len(self._scores):
                self._scores = np.concatenate([self._scores, np.empty_like(self._scores)])
            self._buckets.add(index, member.cluster_score)
        cluster = self._cluster_list[index]
        if member.cluster_score > cluster.score and math.isfinite(cluster.score):
            self._buckets.move(index, member.cluster_score)
        cluster.add(member)
        self._scores[index] = cluster.score
        self.member_ids.add(member.program_id)
        self.num_programs += 1
        # Strictly greater: on a tie the program registered first stays the island's best.
        if member.cluster_score > self.best_score:
            self.best_score = member.cluster_score
            self.best_program_id = member.program_id

    def cluster_probabilities(self) -> np.ndarray:
        """Returns the probability of drawing each cluster, in order of creation, at the current temperature."""
        return softmax(self._scores[: len(self._cluster_list)], self.temperature)

    def sample(
        self, rng: np.random.Generator, functions_per_prompt: int, normalisation: LengthNormalisation = "range"
    ) -> list[tuple[int, float]]:
        """Draws (program id, cluster score) pairs for one prompt, sorted by ascending cluster score.

        Clusters are drawn with replacement, min(functions_per_prompt, number of clusters) times, as in the
        published code; each drawn cluster then gives one program.
        """
        count = min(len(self._cluster_list), functions_per_prompt)
        if count == 1 and len(self._cluster_list) == 1:
            picks = [0]
        else:
            picks = self._buckets.draw(self._scores, self.best_score, self.temperature, rng, count)
        drawn = [(self._cluster_list[i].sample(rng, normalisation), self._cluster_list[i].score) for i in picks]
        drawn.sort(key=lambda pair: pair[1])  # stable: equal scores keep the order they were drawn in
        return drawn


# Clusters scoring more than this many temperatures below the best have a probability below e^-46 (1e-20)
# relative to the best cluster; they are left out of the draw.
_TAIL_TEMPERATURES = 46.0


class ScoreBuckets:
    """Clusters grouped by score in buckets about one temperature wide, for draws whose cost does not grow with the
    number of clusters.

    A draw from softmax(score / T) picks a bucket with probability proportional to (clusters in it) x
    exp((bucket top - best) / T), then a cluster in it uniformly, and accepts it with probability
    exp((score - bucket top) / T); otherwise it draws again. Each accepted cluster thus has probability
    proportional to exp(score / T), exactly, among the clusters within 46 T of the best. Buckets are between
    T and 2 T wide, so a proposal is accepted with probability at least e^-2, and at most 48 buckets are
    looked at. The buckets are rebuilt (in time linear in the number of clusters) when T leaves [width / 2, width],
    which happens about log2(period) times per temperature period.
    """

    def __init__(self) -> None:
        self.width = 0.0  # 0: not built yet
        self.top = 0.0
        self._members: dict[int, list[int]] = {}  # bucket -> cluster indices
        self._bucket_of: list[int] = []
        self._slot: list[int] = []

    def _bucket(self, score: float) -> int:
        return math.floor((self.top - score) / self.width)

    def add(self, index: int, score: float) -> None:
        """Adds cluster `index` (indices are added in order 0, 1, 2, ...)."""
        self._bucket_of.append(0)
        self._slot.append(0)
        if self.width > 0:
            self._place(index, score)

    def move(self, index: int, score: float) -> None:
        """Moves cluster `index` to the bucket of its new score."""
        if self.width > 0:
            self._remove(index)
            self._place(index, score)

    def _place(self, index: int, score: float) -> None:
        bucket = self._bucket(score)
        members = self._members.setdefault(bucket, [])
        self._bucket_of[index], self._slot[index] = bucket, len(members)
        members.append(index)

    def _remove(self, index: int) -> None:
        bucket, slot = self._bucket_of[index], self._slot[index]
        members = self._members[bucket]
        last = members.pop()
        if last != index:
            members[slot] = last
            self._slot[last] = slot
        if not members:
            del self._members[bucket]

    def _rebuild(self, scores: np.ndarray, best: float, width: float) -> None:
        self.width, self.top, self._members = width, best, {}
        for index in range(len(self._bucket_of)):
            self._place(index, float(scores[index]))

    def draw(
        self, scores: np.ndarray, best: float, temperature: float, rng: np.random.Generator, count: int
    ) -> list[int]:
        """Draws `count` cluster indices, with replacement, with probabilities softmax(scores / temperature)."""
        if not (self.width > 0 and self.width / 2 <= temperature <= self.width):
            self._rebuild(scores, best, temperature)
        width, top = self.width, self.top
        first = self._bucket(best)
        last = first + math.ceil(_TAIL_TEMPERATURES * temperature / width) + 1
        candidates = [(top - b * width, members) for b in range(first, last + 1) if (members := self._members.get(b))]
        bounds = np.array([len(members) * math.exp((edge - best) / temperature) for edge, members in candidates])
        cumulative = np.cumsum(bounds)
        picks: list[int] = []
        while len(picks) < count:
            chosen = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(bounds) - 1)
            edge, members = candidates[chosen]
            index = members[int(rng.integers(len(members)))] if len(members) > 1 else members[0]
            if rng.random() < math.exp((scores[index] - edge) / temperature):
                picks.append(index)
        return picks
