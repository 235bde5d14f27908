"""The one error class of the program database."""

__all__ = ["IslandsError"]


class IslandsError(Exception):
    """The program database was misused or its file does not fit this run; the message says what to do next."""
