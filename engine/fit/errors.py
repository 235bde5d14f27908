"""The error raised by the fitting toolkit for bad input and failed fits."""

from engine.errors import DiscoverError

__all__ = ["FitError"]


class FitError(DiscoverError, ValueError):
    """A candidate's parameters or likelihood cannot be fitted; the message says what was expected and found.

    It subclasses ValueError, so a task that lets it propagate has the candidate recorded as INVALID_OUTPUT.
    """
