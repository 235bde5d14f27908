"""Errors raised by the engine for user mistakes and our own broken invariants.

`DiscoverError` is the root of every error the engine raises for people to read (its message says what to do):
configuration, tasks, fits, LLM servers. The command line prints such an error as one sentence, without a
traceback. The program database and the sandbox, which never import the engine, have one root each
(`islands.errors.IslandsError`, `sandbox.errors.SandboxError`), printed the same way.
"""


class DiscoverError(Exception):
    """Root of the engine's errors: a message for the user, printed without a traceback."""


class ConfigError(DiscoverError):
    """A configuration file or command-line option is invalid; the message names the key and its file."""


class EngineError(DiscoverError):
    """The engine cannot go on (e.g. the seed program fails to evaluate); the message says why and what to do."""


class SeedError(EngineError):
    """The seed cannot start a run: it did not evaluate, or it scored outside the band its task states.

    Attributes:
        details: what a `--json` caller prints next to the message (outcome, score, expected, tolerance).
    """

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.details = dict(details or {})
