"""Running untrusted candidate source under limits: outcome classes, the static check and the process sandbox."""

from sandbox.errors import SandboxError
from sandbox.process import ProcessSandbox
from sandbox.results import Job, Limits, Outcome, RunResult, TaskContext
from sandbox.static_check import Rejection, check_source

__all__ = ["Job", "Limits", "Outcome", "ProcessSandbox", "Rejection", "RunResult", "SandboxError", "TaskContext",
           "check_source"]
