"""Reading what an HTTP error response says, the same way for every SDK adapter."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from engine.llm.errors import LLMError, TransientLLMError
from engine.llm.resilience import error_for_status, redact

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


def sdk_error(error: Exception, sdk: ModuleType, *, where: str, key_env: str) -> LLMError | None:
    """Returns the engine's error for an exception raised by the `openai` or `anthropic` SDK, or None.

    Both SDKs name their exceptions alike (`sdk` is the module): a status error becomes what
    `error_for_status` says (401 stops, 429 and 5xx are retried, honouring Retry-After); timeouts, lost
    connections and malformed bodies are transient. Raise the result `from None`: the SDK's exception holds
    the request, whose headers hold the key.
    """
    if isinstance(error, sdk.APIStatusError):
        detail = error_detail(error.body, error.message, [key_env])
        return error_for_status(error.status_code, detail, where=where, key_env=key_env,
                                retry_after_s=retry_after_s(error.response.headers))
    if isinstance(error, sdk.APITimeoutError):  # a kind of APIConnectionError: ask first
        return TransientLLMError("the request timed out")
    if isinstance(error, sdk.APIConnectionError):
        return TransientLLMError(f"connection error: {redact(str(error), [key_env])}")
    if isinstance(error, (json.JSONDecodeError, sdk.APIResponseValidationError)):
        return TransientLLMError(f"malformed response body: {str(error)[:200]}")
    return None
