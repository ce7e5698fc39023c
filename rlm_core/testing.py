"""Test doubles for programs built on RLM: a scripted model, a scripted sandbox, a local server.

``ScriptedLM`` replays replies you write, so a test drives the loop step by step with no
network. ``ScriptedInterpreter`` replays sandbox results and records what it was asked to do.
``OpenAIStubServer`` answers OpenAI chat-completion requests on 127.0.0.1, so the real HTTP path
(the direct OpenAI-compatible route, or litellm's) can be exercised offline.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import anyio

from rlm_core.errors import InterpreterClosedError, InterpreterNotStartedError
from rlm_core.interpreter import (
    DEFAULT_MAX_OUTPUT_CHARS,
    JSON,
    Capabilities,
    ExecutionResult,
    HostTool,
    SubmitField,
    VariableValue,
)
from rlm_core.lifecycle import AsyncStartCloseContext, StartCloseContext
from rlm_core.lm import Completion, Message, Usage

__all__ = ["OpenAIStubServer", "ScriptedInterpreter", "ScriptedLM", "StubStep"]

_DEFAULT_USAGE = Usage(prompt_tokens=100, completion_tokens=20, cost_usd=0.0)

Reply = str | BaseException | Callable[[list[Message]], str]


class ScriptedLM:
    r"""A model that answers with scripted replies, in order, and records every request.

    Each item is a reply string, an exception to raise, or a function from the messages to a
    reply. Alternatively pass one function that answers every request. Safe to call from many
    tasks and threads at once.

    Args:
        replies: The replies in order, or a function answering every call.
        model: The name reported in usage summaries.
        usage: What each call reports it cost.
        latency_s: Simulated time per call.

    Example::

        lm = ScriptedLM(["```python\\nprint(len(context))\\n```", "```python\\nSUBMIT(3)\\n```"])
    """

    def __init__(
        self,
        replies: Iterable[Reply] | Callable[[list[Message]], str],
        *,
        model: str = "scripted",
        usage: Usage = _DEFAULT_USAGE,
        latency_s: float = 0.0,
    ) -> None:
        self._lock = threading.Lock()
        self._answer_all: Callable[[list[Message]], str] | None = None
        self._replies: list[Reply] = []
        if callable(replies):
            self._answer_all = replies
        else:
            self._replies = list(replies)
        self._next = 0
        self._model = model
        self.usage = usage
        self.latency_s = latency_s
        self.calls: list[list[Message]] = []
        """The messages of every request, in the order they arrived."""

    @property
    def model(self) -> str:
        """The scripted model's name."""
        return self._model

    @property
    def remaining(self) -> int:
        """Scripted replies not used yet."""
        with self._lock:
            return len(self._replies) - self._next

    @property
    def prompts(self) -> list[str]:
        """The last message of every request (the prompt of an ``llm_query``)."""
        with self._lock:
            return [call[-1]["content"] for call in self.calls]

    async def complete(self, messages: Sequence[Message]) -> Completion:
        """Answer with the next scripted reply."""
        request = [dict(m) for m in messages]
        with self._lock:
            self.calls.append(request)  # type: ignore[arg-type]
            if self._answer_all is not None:
                reply: Reply = self._answer_all
            elif self._next < len(self._replies):
                reply = self._replies[self._next]
                self._next += 1
            else:
                last = messages[-1]["content"] if messages else ""
                raise AssertionError(
                    f"ScriptedLM ran out of replies after {len(self._replies)}; the request "
                    f"ended with:\n{last[-2000:]}"
                )
        if self.latency_s:
            await anyio.sleep(self.latency_s)
        if isinstance(reply, BaseException):
            raise reply
        text = reply if isinstance(reply, str) else reply(list(messages))
        return Completion(text=text, usage=self.usage, model=self._model)


StubStep = int | Literal["drop", "slow", "garbage"]
"""What :class:`OpenAIStubServer` does with one request; see its ``steps`` argument."""

_STEP_WORDS = ("drop", "slow", "garbage")
_SLOW_STEP_S = 2.0  # longer than the short client timeouts a test sets to provoke a timeout
_GARBAGE_BODY = b"<html>oops"


def _completion_body(request: dict[str, Any], text: str, usage: Mapping[str, JSON] | None) -> bytes:
    """The ``chat.completion`` answering ``request`` with ``text``; usage counted unless given."""
    if usage is None:
        prompt_chars = sum(len(str(m.get("content", ""))) for m in request.get("messages", []))
        usage = {
            "prompt_tokens": prompt_chars // 4 + 1,
            "completion_tokens": len(text) // 4 + 1,
            "total_tokens": prompt_chars // 4 + len(text) // 4 + 2,
        }
    payload = {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "stub"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }
    return json.dumps(payload).encode()


class OpenAIStubServer(StartCloseContext):
    r"""An OpenAI-compatible chat-completions server on 127.0.0.1, in a background thread.

    Use with litellm as ``model="openai/<anything>", api_base=server.api_base``.

    Each request is recorded, then handled by the next of ``steps`` (the last one repeats):

    - ``200`` answers with the next reply;
    - another HTTP status answers with that status and an OpenAI-style error body whose
      message is ``"scripted <status>"``;
    - ``"drop"`` closes the connection without answering;
    - ``"slow"`` answers with the next reply after 2 s, past a short client timeout;
    - ``"garbage"`` answers 200 with a body that is not JSON (``<html>oops``).

    Args:
        replies: Reply texts used in order by the requests answered with a reply (the last one
            repeats), or a function from the request's messages to the reply.
        latency_s: Seconds each request waits before answering (requests run concurrently).
        steps: What to do with each request, in order; by default every request is answered.
        usage: The ``usage`` object of every reply, as given; by default token counts of about
            4 characters a token.

    Attributes ``requests``, ``headers``, ``paths`` and ``connections`` record what arrived.

    Example::

        with OpenAIStubServer(["```python\\nSUBMIT('42')\\n```"]) as server:
            rlm = RLM("q -> answer", lm="openai/stub", api_base=server.api_base)

        with OpenAIStubServer(["fine"], steps=[503, "drop", 200]) as server:
            ...  # two failed attempts, then an answer; len(server.requests) counts attempts
    """

    def __init__(
        self,
        replies: Sequence[str] | Callable[[list[dict[str, Any]]], str] = ("stub answer",),
        *,
        latency_s: float = 0.0,
        steps: Sequence[StubStep] = (200,),
        usage: Mapping[str, JSON] | None = None,
    ) -> None:
        if not callable(replies) and not replies:
            raise ValueError("give at least one reply")
        if not steps:
            raise ValueError("give at least one step")
        for step in steps:
            is_status = isinstance(step, int) and not isinstance(step, bool) and 200 <= step < 600
            if not is_status and step not in _STEP_WORDS:
                raise ValueError(
                    f"a step is an HTTP status (200-599), 'drop', 'slow' or 'garbage', not {step!r}"
                )
        self._replies = replies
        self._counter = itertools.count()
        self._steps = tuple(steps)
        self.latency_s = latency_s
        self.usage = usage
        self.requests: list[dict[str, Any]] = []
        """The JSON body of every request received (its length counts the attempts)."""
        self.headers: list[dict[str, str]] = []
        """The headers of every request received, names lower-cased."""
        self.paths: list[str] = []
        """The path of every request received (an absolute URL when the server is a proxy)."""
        self.connections = 0
        """The connections clients opened (kept-alive connections carry several requests)."""
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def api_base(self) -> str:
        """The base URL to pass as ``api_base``."""
        if self._server is None:
            raise RuntimeError("the server is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _reply_for(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        if callable(self._replies):
            return self._replies(messages)
        index = min(next(self._counter), len(self._replies) - 1)
        return self._replies[index]

    def start(self) -> None:
        """Start serving in a background thread (``with server:`` does it for you)."""
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as clients' connection pools expect

            def setup(self) -> None:
                super().setup()
                with stub._lock:
                    stub.connections += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self.send_error(400, "body is not JSON")
                    return
                with stub._lock:
                    step = stub._steps[min(len(stub.requests), len(stub._steps) - 1)]
                    stub.requests.append(body)
                    stub.headers.append({k.lower(): v for k, v in self.headers.items()})
                    stub.paths.append(self.path)
                    text = stub._reply_for(body) if step in (200, "slow") else ""
                if stub.latency_s:
                    time.sleep(stub.latency_s)
                if step == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if step == "slow":
                    time.sleep(_SLOW_STEP_S)
                status = step if isinstance(step, int) else 200
                if step == "garbage":
                    data = _GARBAGE_BODY
                elif status == 200:
                    data = _completion_body(body, text, stub.usage)
                else:
                    data = json.dumps({"error": {"message": f"scripted {status}"}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        class Server(ThreadingHTTPServer):
            # socketserver's default backlog of 5 drops bursts of connections (a batch of 32
            # sub-calls), and a dropped SYN costs the client a full second.
            request_queue_size = 256
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that gave up (a timeout, a "slow" step) closed the socket the answer
                # was going to; that is expected, anything else is still reported.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        server = Server(("127.0.0.1", 0), Handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="openai-stub", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop the server and its thread; idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None


Script = Iterable[ExecutionResult | str] | Callable[[str], ExecutionResult | str]


class ScriptedInterpreter(AsyncStartCloseContext):
    """An interpreter double that runs nothing.

    Each ``execute`` returns the next scripted item (a string is shown as stdout), or what a
    callable script returns for the code. Everything the caller did is recorded in
    :attr:`executed`, :attr:`variables`, :attr:`tools` and :attr:`outputs`, so a unit test can
    assert on it. Running out of script raises AssertionError naming the unexpected cell.

    Args:
        script: Results in order, or a function from code to result.
        capabilities: What to report; defaults to an isolated, timeout-surviving sandbox.
    """

    def __init__(self, script: Script = (), *, capabilities: Capabilities | None = None) -> None:
        self._script: Callable[[str], ExecutionResult | str]
        if callable(script):
            self._script = script
        else:
            items = iter(list(script))

            def replay(code: str) -> ExecutionResult | str:
                try:
                    return next(items)
                except StopIteration:
                    raise AssertionError(f"no scripted result left for cell:\n{code}") from None

            self._script = replay
        self._capabilities = capabilities or Capabilities(
            isolation="wasm",
            network=False,
            writable_filesystem=False,
            survives_timeout=True,
            max_variable_bytes=None,
        )
        self.executed: list[str] = []
        self.variables: dict[str, VariableValue] = {}
        self.tools: dict[str, HostTool] = {}
        self.outputs: list[SubmitField] | None = None
        self.started = False
        self.closed = False

    @property
    def capabilities(self) -> Capabilities:
        """The scripted capabilities."""
        return self._capabilities

    def _check(self) -> None:
        if self.closed:
            raise InterpreterClosedError("this interpreter was closed; create a new one")
        if not self.started:
            raise InterpreterNotStartedError("call start() (or use `async with`) first")

    async def start(self) -> None:
        """Mark started."""
        if self.closed:
            raise InterpreterClosedError("this interpreter was closed; create a new one")
        self.started = True

    async def register(
        self,
        tools: Mapping[str, HostTool] | None = None,
        outputs: Sequence[SubmitField] | None = None,
    ) -> None:
        """Record the tools and outputs."""
        self._check()
        self.tools = dict(tools or {})
        self.outputs = None if outputs is None else list(outputs)

    async def set_variables(self, values: Mapping[str, VariableValue]) -> None:
        """Record the variables."""
        self._check()
        self.variables.update(values)

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    ) -> ExecutionResult:
        """Record the cell and return the next scripted result."""
        self._check()
        self.executed.append(code)
        item = self._script(code)
        if isinstance(item, str):
            return ExecutionResult(stdout=item, stdout_chars=len(item))
        return item

    async def aclose(self) -> None:
        """Mark closed; idempotent."""
        self.closed = True
