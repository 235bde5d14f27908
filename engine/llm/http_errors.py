"""Reading what an HTTP error response says, the same way for every SDK adapter."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable, Mapping
from typing import Any

from engine.llm.resilience import redact

MAX_DETAIL_CHARS = 300


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Returns the wait the server asks for, in seconds, from `retry-after-ms` or `retry-after`, or None.

    `retry-after` may be a number of seconds or an HTTP date.
    """
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - time.time())
    return None


def error_detail(body: Any, fallback: str, key_envs: Iterable[str]) -> str:
    """Returns the server's error message from an error body, shortened and with API keys redacted.

    Both providers send {"error": {"message": ...}} (Anthropic adds {"type": "error"} around it).
    """
    message = fallback
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(body.get("message"), str):
            message = body["message"]
    message = redact(" ".join(message.split()), key_envs)
    return message if len(message) <= MAX_DETAIL_CHARS else message[:MAX_DETAIL_CHARS] + "..."
