"""Errors raised by the engine for user mistakes and our own broken invariants."""


class ConfigError(Exception):
    """A configuration file or command-line option is invalid; the message names the key and its file."""


class EngineError(Exception):
    """The engine cannot go on (e.g. the seed program fails to evaluate); the message says why and what to do."""


class SeedError(EngineError):
    """The seed cannot start a run: it did not evaluate, or it scored outside the band its task states.

    Attributes:
        details: what a `--json` caller prints next to the message (outcome, score, expected, tolerance).
    """

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.details = dict(details or {})
