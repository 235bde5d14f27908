"""Running untrusted candidate source under limits, and scoring what it computes out of its reach: outcome classes,
the static check, the process sandbox and the two-stage (trace, then score) evaluation."""

from sandbox.errors import SandboxError
from sandbox.process import ProcessSandbox
from sandbox.results import Job, Limits, Outcome, RunResult, TaskContext
from sandbox.staged import StagedSandbox
from sandbox.static_check import Rejection, check_source

__all__ = ["Job", "Limits", "Outcome", "ProcessSandbox", "Rejection", "RunResult", "SandboxError", "StagedSandbox",
           "TaskContext", "check_source"]
