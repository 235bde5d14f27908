"""The `sandbox:` section of an experiment config: which backend runs candidates, and on how many workers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_DOCKER_IMAGE = "discover:latest"


class SandboxConfig(BaseModel):
    """How candidates are run: the isolation backend, the worker pool and its resources.

    Example (configs/*.yaml)::

        sandbox:
          backend: process          # or docker (one container per candidate)
          runner: ray               # or local (threads, no Ray; handy for debugging)
          num_workers: 4
          num_gpus_per_worker: 0.25 # four workers share one GPU
          ray_address: null         # null: start a private local Ray; "auto", "ray://head:10001" or "head:6379"

    Attributes:
        backend: "process" runs each worker's candidates in a warm subprocess (bubblewrap when available);
            "docker" runs each candidate in a fresh container of `docker_image`.
        runner: "ray" spreads workers over a Ray cluster (or a private local Ray); "local" uses threads
            in this process.
        num_workers: how many candidates run at the same time.
        num_gpus_per_worker: GPUs reserved per worker; fractions share a device (0.25 = four per GPU).
            0 makes JAX run on the CPU. Above 0, process workers run in GPU mode (see `sandbox/process.py`:
            the GPU device nodes are bound in, memory_mb bounds RLIMIT_DATA instead of the address space).
        ray_address: None starts a private local Ray instance; otherwise passed to `ray.init(address=...)`.
        max_in_flight_per_island: candidates of one island being evaluated at once; the engine waits for
            results before sampling more prompts from that island.
        queued_per_worker: jobs kept waiting on each worker besides the running one, so workers never idle.
        max_jobs_per_call: Ray runner: when more jobs wait than the workers have room for, up to this many go
            to a worker in one Ray call (each still in its own sandboxed process), saving a round trip per job.
        use_bwrap: process backend only. None uses bubblewrap when it works here, True requires it,
            False never uses it.
        docker_image: docker backend only: the image built from the repository's Dockerfile.
        docker_startup_grace_s: docker backend only: seconds added to the task's timeout_s for the
            container to start Python and import JAX before it is killed.
        compile_cache: where the trusted scoring workers keep JAX's persistent compilation cache, shared by a
            run's workers and by later runs: "" (default) for $XDG_CACHE_HOME/discover/xla (~/.cache/...), a
            folder, or "off". Used only when the tracing stage is isolated (bubblewrap or docker); see
            `sandbox.pool.compile_cache_folder`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["process", "docker"] = "process"
    runner: Literal["ray", "local"] = "ray"
    num_workers: int = Field(default=2, ge=1, le=4096)
    num_gpus_per_worker: float = Field(default=0.0, ge=0.0)
    ray_address: str | None = None
    max_in_flight_per_island: int = Field(default=2, ge=1)
    queued_per_worker: int = Field(default=1, ge=0, le=64)
    max_jobs_per_call: int = Field(default=8, ge=1, le=256)
    use_bwrap: bool | None = None
    docker_image: str = DEFAULT_DOCKER_IMAGE
    docker_startup_grace_s: float = Field(default=20.0, ge=0.0)
    compile_cache: str = ""

    @field_validator("num_gpus_per_worker")
    @classmethod
    def _whole_gpus_above_one(cls, value: float) -> float:
        # Ray accepts fractions only below one GPU; 1.5 GPUs cannot be split over devices.
        if value > 1.0 and not value.is_integer():
            raise ValueError(
                f"expected a fraction below 1 (e.g. 0.25) or a whole number of GPUs, found {value}; "
                "use 1, 2, ... for several whole GPUs per worker"
            )
        return value

    @field_validator("ray_address")
    @classmethod
    def _address_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(
                "expected null (private local Ray), 'auto', 'ray://host:port' or 'host:port', found an empty "
                "string; remove the key to start a local Ray"
            )
        return value
