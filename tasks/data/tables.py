"""Reading the upstream CSV files into columns of strings, checked against the columns a loader needs."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.task.datasets import DatasetError

__all__ = ["numeric_column", "read_csv_columns"]


def read_csv_columns(path: Path, required: Sequence[str]) -> dict[str, list[str]]:
    """Returns {column name: list of cell strings} for the CSV file at `path` (first row = header).

    Raises:
        DatasetError: a required column is absent, or a row has a different number of cells than the header.
    """
    with Path(path).open(newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    if not rows:
        raise DatasetError(f"{path}: expected a CSV file with a header row; the file is empty.")
    header = [name.strip() for name in rows[0]]
    missing = [name for name in required if name not in header]
    if missing:
        raise DatasetError(f"{path}: expected columns {list(required)}; missing {missing}; found {header}.")
    body = rows[1:]
    for line_number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DatasetError(f"{path}, line {line_number}: expected {len(header)} cells; found {len(row)}.")
    return {name: [row[index] for row in body] for index, name in enumerate(header)}


def numeric_column(columns: dict[str, list[str]], name: str, path: Path) -> np.ndarray:
    """Returns column `name` as a float64 array; raises DatasetError naming the first cell that is not a number."""
    values = np.empty(len(columns[name]), dtype=np.float64)
    for row_index, cell in enumerate(columns[name]):
        try:
            values[row_index] = float(cell)
        except ValueError as error:
            raise DatasetError(
                f"{path}, line {row_index + 2}: expected a number in column {name!r}; found {cell!r}."
            ) from error
    return values
