"""Errors raised for malformed tasks."""


class TaskSpecError(Exception):
    """A task.yaml, or a file it names, is malformed; the message says which file, what was found and what to do."""
