"""The Pareto front of programs: highest held-out score for the fewest free parameters and smallest syntax tree."""

from __future__ import annotations

from typing import Sequence

__all__ = ["pareto_front_ids"]

# (program id, score, num_params, ast_size)
Point = tuple[int, float, int, int]


def pareto_front_ids(points: Sequence[Point]) -> list[int]:
    """Returns the ids of the points no other point dominates, by descending score (ties: fewer params, smaller).

    A point dominates another when its score is at least as high, it has at most as many parameters and at most
    as large a tree, and is strictly better in one of the three. Points equal in all three are all kept.
    """
    ordered = sorted(points, key=lambda p: (-p[1], p[2], p[3], p[0]))
    front: list[Point] = []
    for point in ordered:
        # Any point dominating `point` sorts before it, so it is enough to compare with the front so far.
        dominated = any(
            f[1] >= point[1] and f[2] <= point[2] and f[3] <= point[3] and (f[1], f[2], f[3]) != point[1:]
            for f in front
        )
        if not dominated:
            front.append(point)
    return [point[0] for point in front]
