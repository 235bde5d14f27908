"""The one base class for errors raised by the sandbox package itself (our bugs and user mistakes).

Candidate failures are never raised: they come back as a `RunResult` with an `Outcome`.
"""

from __future__ import annotations


class SandboxError(Exception):
    """A sandbox could not be set up or used: a bad TaskContext, a broken entry file, a worker that cannot start."""
