"""The `subset` argument every loader takes: keep the first N subjects, neurons or sweeps, for small runs."""

from __future__ import annotations

from engine.task.datasets import DatasetError

__all__ = ["check_subset"]


def check_subset(subset: int | None, unit: str, available: int) -> int:
    """Returns how many `unit`s to keep: `available` when subset is None, else `subset` if 1 <= subset <= available.

    Raises:
        DatasetError: subset is not a positive integer, or asks for more than there are.
    """
    if subset is None:
        return available
    if isinstance(subset, bool) or not isinstance(subset, int) or subset < 1:
        raise DatasetError(f"subset must be a positive number of {unit} or None; got {subset!r}.")
    if subset > available:
        raise DatasetError(
            f"subset = {subset}, but the dataset has only {available} {unit}; use subset <= {available}."
        )
    return subset
