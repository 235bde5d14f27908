"""Settings of the program database: islands, clusters, sampling temperatures, resets and migration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["IslandsConfig", "ClusterScore"]

ClusterScore = Literal["mean", "median", "min", "max", "last"]


class IslandsConfig(BaseModel):
    """How programs are grouped into islands and clusters and how prompt examples are drawn from them.

    The defaults are those published with FunSearch (Romera-Paredes et al. 2024, Nature 625:468), except
    that the cluster score is the mean over tests rather than the score of the last test.

    Attributes:
        num_islands: number of independent sub-populations.
        functions_per_prompt: programs shown in one prompt (fewer while an island has fewer clusters).
        cluster_sampling_temperature_init: T0 of the cluster softmax; T = T0 * (1 - (n mod period) / period),
            n = programs registered on the island since it was (re)created.
        cluster_sampling_temperature_period: the period of that schedule, in programs registered on the island.
        cluster_score: how per-test scores reduce to one cluster score ("last" is the published code's choice).
        length_normalisation: inside a cluster, a program of length L (characters) has weight
            exp(-(L - min) / (max - min + 1e-6)) with "range", or exp(-(L - min) / (max + 1e-6)) with "max"
            (the published code's formula, which makes the preference for short programs weak).
        signature_decimals: per-test scores are rounded to this many decimals to form the cluster signature.
        cluster_by: "scores" keys clusters by the per-test score signature; "behaviour" keys them by the
            candidate's behaviour signature when it has one (and by scores otherwise).
        reject_duplicates: when true, `find_duplicate` reports programs whose canonical form was stored before.
        reset: "periodic" empties the weaker half of the islands every reset period and reseeds each from
            the best program of a surviving island; "migration" instead copies the best programs of each
            island to the next one on a ring; "none" keeps islands apart for the whole run.
        reset_period_s: seconds of run time between resets (None: no time-based reset).
        reset_period_evaluations: evaluations between resets (None: no count-based reset). A reset happens
            when either period has passed since the last one.
        migration_interval_evaluations: evaluations between migrations (reset="migration").
        migration_count: programs each island sends to the next one at each migration.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_islands: int = Field(10, ge=1)
    functions_per_prompt: int = Field(2, ge=1)
    cluster_sampling_temperature_init: float = Field(0.1, gt=0)
    cluster_sampling_temperature_period: int = Field(30_000, ge=1)
    cluster_score: ClusterScore = "mean"
    length_normalisation: Literal["range", "max"] = "range"
    signature_decimals: int = Field(6, ge=0, le=15)
    cluster_by: Literal["scores", "behaviour"] = "scores"
    reject_duplicates: bool = True
    reset: Literal["periodic", "migration", "none"] = "periodic"
    reset_period_s: float | None = Field(4 * 3600.0, gt=0)
    reset_period_evaluations: int | None = Field(None, ge=1)
    migration_interval_evaluations: int = Field(1000, ge=1)
    migration_count: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _periodic_needs_a_period(self) -> IslandsConfig:
        if self.reset == "periodic" and self.reset_period_s is None and self.reset_period_evaluations is None:
            raise ValueError(
                "reset is 'periodic' but both reset_period_s and reset_period_evaluations are None; "
                "set one of them, or set reset to 'none'"
            )
        return self
