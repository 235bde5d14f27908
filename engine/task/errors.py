"""Errors raised for malformed tasks."""

from engine.errors import DiscoverError


class TaskSpecError(DiscoverError):
    """A task.yaml, or a file it names, is malformed; the message says which file, what was found and what to do."""
