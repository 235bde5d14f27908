"""Opening the worker pool a configuration asks for: threads in this process, or Ray actors.

`sandbox.pool` holds the protocols, the sandbox recipe and the thread runner; `sandbox.ray_pool` the Ray runner,
built on them. This module is the one place that chooses between the two, so neither imports the other's
chooser.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sandbox.config import SandboxConfig
from sandbox.pool import LocalRunner, SandboxSpec
from sandbox.results import TaskContext

if TYPE_CHECKING:
    from sandbox.ray_pool import RayRunner

__all__ = ["make_runner"]


def make_runner(
    config: SandboxConfig, context: TaskContext, *, hidden_paths: Sequence[str] = ()
) -> LocalRunner | RayRunner:
    """Returns the runner `config` asks for, with its workers starting for `context`.

    Args:
        hidden_paths: files or folders candidates must not see, e.g. the run's SQLite database.
    """
    spec = SandboxSpec.from_config(config, hidden_paths)
    if config.runner == "local":
        return LocalRunner(
            context,
            config.num_workers,
            sandbox_factory=spec,
            num_gpus_per_worker=config.num_gpus_per_worker,
        )
    from sandbox.ray_pool import RayRunner  # imports Ray: only for the Ray runner

    return RayRunner(
        context,
        config.num_workers,
        ray_address=config.ray_address,
        num_gpus_per_worker=config.num_gpus_per_worker,
        sandbox_factory=spec,
        queued_per_worker=config.queued_per_worker,
        max_jobs_per_call=config.max_jobs_per_call,
    )
