"""A loopback server speaking the OpenAI Chat Completions and Anthropic Messages wire formats, for tests.

The real SDK clients talk to it over HTTP on 127.0.0.1. Each request gets the next scripted `Reply` if any is
queued, otherwise the answer function's reply. Use it in a thread:

    with LLMServer(answer=copy_best_shot) as server:
        server.push(Reply.rate_limited(retry_after_s=0.2))     # the first request gets a 429
        client = AsyncOpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0)
        ...
        server.max_concurrent, server.requests                  # what the server saw

or as a subprocess (prints "LLM server listening on http://127.0.0.1:PORT" on stdout, then serves until killed):

    python tests/llm_server.py --port 0 [--delay-s 0.0] [--answer vary|copy]

Point `discover run --base-url` at http://127.0.0.1:PORT/v1 (OpenAI) or http://127.0.0.1:PORT (Anthropic).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import select
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """What the server sends back for one request.

    Attributes:
        text: the answer text, for status 200.
        status: the HTTP status.
        headers: extra response headers, e.g. {"Retry-After": "1"}.
        delay_s: wait before answering, in seconds (to test timeouts and concurrency).
        body: a raw body to send instead of the JSON built from the other fields (e.g. malformed JSON).
        prompt_tokens: reported prompt tokens; None counts the words of the request's messages.
        completion_tokens: reported completion tokens; None counts the words of `text`.
        error_message: the message of an error body, for statuses >= 400.
        truncated: report that the answer stopped at max_tokens (finish_reason "length" / stop_reason
            "max_tokens").
    """

    text: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    body: bytes | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error_message: str = ""
    truncated: bool = False

    @staticmethod
    def rate_limited(retry_after_s: float = 1.0) -> Reply:
        """A 429 with a Retry-After header."""
        return Reply(status=429, headers={"Retry-After": f"{retry_after_s:g}"}, error_message="Rate limit reached")

    @staticmethod
    def server_error(status: int = 500) -> Reply:
        """A 5xx."""
        return Reply(status=status, error_message="The server had an error processing your request")

    @staticmethod
    def unauthorized(status: int = 401) -> Reply:
        """A 401 (or 403) like the providers send for a bad key."""
        return Reply(status=status, error_message="Invalid API key provided")

    @staticmethod
    def malformed() -> Reply:
        """A 200 whose body is not JSON."""
        return Reply(body=b'{"id": "broken", "choices": [', headers={"Content-Type": "application/json"})

    @staticmethod
    def slow(delay_s: float, text: str = "too late") -> Reply:
        """A normal answer that comes after `delay_s` seconds."""
        return Reply(text=text, delay_s=delay_s)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received.

    Attributes:
        api: "openai" or "anthropic".
        path: the URL path.
        headers: request headers, names lower-cased.
        body: the decoded JSON body.
        model: the requested model.
        system: the system message ("" when none).
        prompt: the text of the last user message.
    """

    api: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    model: str
    system: str
    prompt: str


AnswerFunction = Callable[[RecordedRequest], "Reply | str"]


def _text_of(content: Any) -> str:
    """Returns the text of a message content (a string or a list of content blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return ""


_HEADER = re.compile(r"^def (\w+?)_v(\d+)\(", re.MULTILINE)


_REQUESTED = re.compile(r"^Write `(\w+?)_v(\d+)`", re.MULTILINE)


def copy_best_shot(request: RecordedRequest) -> str:
    """Answers a prompt with its best program, renamed to the version the prompt asks for.

    A completion-style prompt ends with the header `def f_vN(...):` and shows the best program just before it;
    a chat prompt shows the programs in a ```python block and asks "Write `f_vN`". The best program is
    returned as `f_vN` in a ```python block, with a short line of prose around it. This is a valid candidate
    for any task, so an end-to-end run gets past parsing and into evaluation.
    """
    headers = list(_HEADER.finditer(request.prompt))
    requested = _REQUESTED.search(request.prompt)
    if requested and headers:
        previous, new_name = headers[-1], f"{requested.group(1)}_v{requested.group(2)}"
        block = request.prompt[previous.start() :].split("\n```")[0].rstrip()
    elif len(headers) >= 2:
        previous, last = headers[-2], headers[-1]
        new_name = f"{last.group(1)}_v{last.group(2)}"
        block = request.prompt[previous.start() : last.start()].rstrip()
    else:
        return f"I cannot find a previous version to improve in this prompt.\n\n{request.prompt[-200:]}"
    block_lines = block.splitlines()
    kept = [block_lines[0]]
    for line in block_lines[1:]:  # stop at the first unindented non-blank line after the function
        if line.strip() and not line[0].isspace():
            break
        kept.append(line)
    old_name = f"{previous.group(1)}_v{previous.group(2)}"
    code = re.sub(rf"\b{old_name}\b", new_name, "\n".join(kept).rstrip())
    return f"Here is an improved version:\n\n```python\n{code}\n```\n\nIt keeps the same parameters."


_variants = itertools.count(1)


def vary_best_shot(request: RecordedRequest) -> str:
    """Like `copy_best_shot`, but each answer widens the last bound on the PARAMS line by a different amount.

    Every answer is then a valid candidate that is not a duplicate of an earlier one, so an end-to-end run
    keeps evaluating instead of stopping on duplicates.
    """
    answer = copy_best_shot(request)
    number = next(_variants)
    lines = answer.split("\n")
    for index, line in enumerate(lines):
        if "PARAMS = {" in line:
            bounds = list(re.finditer(r"(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*\)", line))
            if bounds:
                last = bounds[-1]
                value = float(last.group(1)) * (1 + number / 1000) + number / 1000
                lines[index] = line[: last.start(1)] + repr(value) + line[last.end(1) :]
            break
    return "\n".join(lines)


ANSWERS = {"copy": copy_best_shot, "vary": vary_best_shot}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def get_request(self):
        connection, address = super().get_request()
        # Without TCP_NODELAY, Nagle's algorithm plus delayed ACK adds ~40 ms to every keep-alive response.
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address


class LLMServer:
    """A scripted Chat Completions + Messages server on 127.0.0.1, run in a background thread.

    Args:
        answer: makes the reply for a request when no scripted reply is queued; a string is a normal answer.
        script: replies for the first requests, in order.
        port: the port to listen on; 0 picks a free one.
        delay_s: default wait before every answer, in seconds.
        one_at_a_time: compute one answer at a time, as a llama.cpp server with one slot does: the others
            queue. Like llama-server, it stops computing (or never starts) an answer whose client closed the
            connection.

    Attributes:
        requests: every request received, in order.
        max_concurrent: most requests being handled at the same time so far.
        cancelled: answers given up because the client closed its connection first.
        answered: answers sent.
    """

    def __init__(
        self,
        answer: AnswerFunction = copy_best_shot,
        script: Iterable[Reply | str] = (),
        port: int = 0,
        delay_s: float = 0.0,
        one_at_a_time: bool = False,
    ) -> None:
        self.answer = answer
        self.delay_s = delay_s
        self.one_at_a_time = one_at_a_time
        self._slot = threading.Lock()
        self.cancelled = 0
        self.answered = 0
        self._script: deque[Reply | str] = deque(script)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self.requests: list[RecordedRequest] = []
        self.concurrent = 0
        self.max_concurrent = 0
        self._httpd = _Server(("127.0.0.1", port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The server root, e.g. http://127.0.0.1:40123 (the Anthropic SDK's base_url)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The OpenAI SDK's base_url, e.g. http://127.0.0.1:40123/v1."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The Anthropic SDK's base_url (it appends /v1/messages itself)."""
        return self.url

    def push(self, *replies: Reply | str) -> None:
        """Queues replies for the next requests, in order."""
        with self._lock:
            self._script.extend(replies)

    def reset_counters(self) -> None:
        """Forgets the recorded requests and the concurrency high-water mark."""
        with self._lock:
            self.requests.clear()
            self.max_concurrent = self.concurrent

    def start(self) -> LLMServer:
        """Starts serving in a daemon thread and returns self."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="llm-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the socket; delayed replies are cut short."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- request handling ---------------------------------------------------------------------------------

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        reply = scripted if scripted is not None else self.answer(request)
        return Reply(text=reply, delay_s=self.delay_s) if isinstance(reply, str) else reply

    def _record(self, api: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> RecordedRequest:
        messages = body.get("messages") or []
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if api == "anthropic":
            system = _text_of(body.get("system", ""))
        else:
            system = "".join(_text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
        request = RecordedRequest(
            api=api,
            path=path,
            headers=headers,
            body=body,
            model=str(body.get("model", "")),
            system=system,
            prompt=_text_of(users[-1].get("content")) if users else "",
        )
        with self._lock:
            self.requests.append(request)
        return request

    def _payload(self, api: str, request: RecordedRequest, reply: Reply) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json", **reply.headers}
        if reply.body is not None:
            return reply.status, headers, reply.body
        if reply.status >= 400:
            if api == "anthropic":
                kind = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
                error = {"type": "error", "error": {"type": kind.get(reply.status, "api_error"),
                                                    "message": reply.error_message}}
            else:
                error = {"error": {"message": reply.error_message, "type": "error", "code": reply.status}}
            return reply.status, headers, json.dumps(error).encode()
        messages = request.body.get("messages", [])
        words_in = len(" ".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict)).split())
        prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else words_in
        completion_tokens = reply.completion_tokens if reply.completion_tokens is not None else len(reply.text.split())
        number = next(self._ids)
        if api == "anthropic":
            body = {
                "id": f"msg_{number:06d}", "type": "message", "role": "assistant", "model": request.model,
                "content": [{"type": "text", "text": reply.text}],
                "stop_reason": "max_tokens" if reply.truncated else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
            }
        else:
            # Chat Completions' n: further answers come from the same scripted reply or answer function.
            replies = [reply] + [self._next_reply(request) for _ in range(int(request.body.get("n") or 1) - 1)]
            choices = [{"index": i, "message": {"role": "assistant", "content": r.text},
                        "finish_reason": "length" if r.truncated else "stop", "logprobs": None}
                       for i, r in enumerate(replies)]
            completion_tokens += sum(len(r.text.split()) for r in replies[1:])
            body = {
                "id": f"chatcmpl-{number:06d}", "object": "chat.completion", "created": int(time.time()),
                "model": request.model,
                "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            }
        return 200, headers, json.dumps(body).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like real providers

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                path = self.path.split("?")[0]
                if path.endswith("/chat/completions"):
                    api = "openai"
                elif path.endswith("/messages"):
                    api = "anthropic"
                else:
                    self._send(404, {"Content-Type": "application/json"}, b'{"error": {"message": "no such path"}}')
                    return
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"Content-Type": "application/json"}, b'{"error": {"message": "bad JSON"}}')
                    return
                headers = {name.lower(): value for name, value in self.headers.items()}
                request = server._record(api, path, headers, body)
                with server._lock:
                    server.concurrent += 1
                    server.max_concurrent = max(server.max_concurrent, server.concurrent)
                try:
                    reply = server._next_reply(request)
                    if server.one_at_a_time:
                        if not self._compute_alone(reply.delay_s):
                            with server._lock:
                                server.cancelled += 1
                            return
                    elif reply.delay_s > 0 and server._stopping.wait(reply.delay_s):
                        return
                    self._send(*server._payload(api, request, reply))
                    with server._lock:
                        server.answered += 1
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (e.g. its timeout fired) before the answer came
                finally:
                    with server._lock:
                        server.concurrent -= 1

            def _client_gone(self) -> bool:
                readable, _, _ = select.select([self.connection], [], [], 0)
                try:
                    return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def _compute_alone(self, delay_s: float) -> bool:
                """Waits for the one slot, then for `delay_s`; False when the client left first."""
                while not server._slot.acquire(timeout=0.02):
                    if self._client_gone() or server._stopping.is_set():
                        return False
                try:
                    end = time.monotonic() + delay_s
                    while (remaining := end - time.monotonic()) > 0:
                        if self._client_gone() or server._stopping.wait(min(0.02, remaining)):
                            return False
                    return not self._client_gone()
                finally:
                    server._slot.release()

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


def main(argv: list[str] | None = None) -> None:
    """Serves `vary_best_shot` (or `copy_best_shot`) answers until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--delay-s", type=float, default=0.0, help="wait before every answer, in seconds")
    parser.add_argument("--answer", choices=sorted(ANSWERS), default="vary",
                        help="vary: the best shot with a different PARAMS bound each time; copy: the best shot as is")
    arguments = parser.parse_args(argv)
    server = LLMServer(answer=ANSWERS[arguments.answer], port=arguments.port, delay_s=arguments.delay_s)
    print(f"LLM server listening on {server.url}", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()


if __name__ == "__main__":
    sys.exit(main())
