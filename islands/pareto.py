"""The Pareto front of programs: highest held-out score for the fewest free parameters and smallest syntax tree."""

from __future__ import annotations

import bisect
from typing import Sequence

__all__ = ["pareto_front_ids"]

# (program id, score, num_params, ast_size)
Point = tuple[int, float, int, int]


def pareto_front_ids(points: Sequence[Point]) -> list[int]:
    """Returns the ids of the points no other point dominates, by descending score (ties: fewer params, smaller).

    A point dominates another when its score is at least as high, it has at most as many parameters and at most
    as large a tree, and is strictly better in one of the three. Points equal in all three are all kept.
    Takes O(n log n) time for n points. A point whose complexity is not a number (a database edited by hand)
    cannot be compared, and is on no front.
    """
    comparable = [p for p in points if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in p[2:])]
    ordered = sorted(comparable, key=lambda p: (-p[1], p[2], p[3], p[0]))
    # Any point that dominates another sorts before it. `staircase` holds the front so far as (params, size)
    # pairs with params ascending and size strictly descending: the smallest size reachable at each params.
    staircase_params: list[int] = []
    staircase_sizes: list[int] = []
    front: list[Point] = []
    previous: Point | None = None
    for point in ordered:
        _, score, params, size = point
        if previous is not None and (score, params, size) == previous[1:]:
            front.append(point)  # equal to a front point: not dominated by it
            continue
        # The smallest size among earlier points with at most `params` parameters.
        index = bisect.bisect_right(staircase_params, params) - 1
        if index >= 0 and staircase_sizes[index] <= size:
            continue
        front.append(point)
        previous = point
        # Insert (params, size) and drop the pairs it now covers (more params and no smaller size).
        position = bisect.bisect_left(staircase_params, params)
        end = position
        while end < len(staircase_params) and staircase_sizes[end] >= size:
            end += 1
        staircase_params[position:end] = [params]
        staircase_sizes[position:end] = [size]
    return [point[0] for point in front]
