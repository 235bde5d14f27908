"""Run metadata: which task and data a database belongs to, and the check made when a database is reopened."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from islands.config import IslandsConfig
from islands.errors import IslandsError

__all__ = ["RunMeta", "meta_to_strings", "meta_from_strings", "describe_mismatch"]


@dataclass(frozen=True, slots=True)
class RunMeta:
    """What a run is about; a database made for one run refuses to be reused for another.

    Attributes:
        task_name: the task's name, e.g. "bandit".
        task_version: the task's scoring version; scores of different versions are never compared.
        data_hash: a hash of the task's data, as the engine computes it.
        function_name: the evolved function, e.g. "agent" ("" when not known); used to count free parameters.
        experiment_config: the experiment's configuration as text, kept for reports (not compared on reopen).
    """

    task_name: str
    task_version: int
    data_hash: str
    function_name: str = ""
    experiment_config: str = ""


def meta_to_strings(meta: RunMeta, config: IslandsConfig) -> dict[str, str]:
    """Returns the rows of the meta table that describe a run."""
    return {
        "task_name": meta.task_name,
        "task_version": str(meta.task_version),
        "data_hash": meta.data_hash,
        "function_name": meta.function_name,
        "experiment_config": meta.experiment_config,
        "islands_config": config.model_dump_json(),
    }


def meta_from_strings(values: dict[str, str]) -> tuple[RunMeta, IslandsConfig]:
    """Inverse of `meta_to_strings`; raises IslandsError when the stored rows cannot be read."""
    try:
        meta = RunMeta(
            task_name=values["task_name"],
            task_version=int(values["task_version"]),
            data_hash=values["data_hash"],
            function_name=values.get("function_name", ""),
            experiment_config=values.get("experiment_config", ""),
        )
        return meta, IslandsConfig.model_validate_json(values["islands_config"])
    except (KeyError, ValueError, ValidationError) as error:
        raise IslandsError(
            f"the run metadata stored in the database cannot be read ({type(error).__name__}: {error}); "
            "it was made by another version of discover or edited by hand. Use another --db path."
        ) from error


def describe_mismatch(where: str, stored: dict[str, str], meta: RunMeta, config: IslandsConfig) -> str:
    """Returns "" when a stored run matches this one, else a message saying what differs and what to do."""
    stored_meta, stored_config = meta_from_strings(stored)
    if (stored_meta.task_name, stored_meta.task_version) != (meta.task_name, meta.task_version):
        return (
            f"database {where} was made for task '{stored_meta.task_name}' version {stored_meta.task_version}; "
            f"this run is task '{meta.task_name}' version {meta.task_version}. Use another --db path."
        )
    if stored_meta.data_hash != meta.data_hash:
        return (
            f"database {where} was made with task data of hash {stored_meta.data_hash}; this run's task data "
            f"has hash {meta.data_hash}. Scores on different data are not comparable. Use another --db path."
        )
    if stored_meta.function_name != meta.function_name:
        return (
            f"database {where} was made for evolved function '{stored_meta.function_name}'; this run evolves "
            f"'{meta.function_name}'. Use another --db path."
        )
    stored_fields, fields = stored_config.model_dump(), config.model_dump()
    differing = [name for name in fields if fields[name] != stored_fields.get(name)]
    if differing:
        was = ", ".join(f"{name}={json.dumps(stored_fields.get(name))}" for name in differing)
        now = ", ".join(f"{name}={json.dumps(fields[name])}" for name in differing)
        return (
            f"database {where} was made with islands settings {was}; this run has {now}. "
            "Use another --db path, or the islands settings the database was made with."
        )
    return ""
