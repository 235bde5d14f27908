"""Errors raised by the engine for user mistakes and our own broken invariants."""


class ConfigError(Exception):
    """A configuration file or command-line option is invalid; the message names the key and its file."""


class EngineError(Exception):
    """The engine cannot go on (e.g. the seed program fails to evaluate); the message says why and what to do."""
