"""A local stand-in for E2B's control plane and envd, for testing code that uses ``rlmbox-e2b``.

:class:`E2BStandIn` serves, on ``127.0.0.1`` and a random port, the few HTTP routes of E2B's
API that the SDK calls to create and kill sandboxes, and envd's ``process.Process`` Connect
service built on the SDK's own generated ``ProcessASGIApplication``. Sandbox commands run as
local subprocesses, so this tests the adapter's use of the pinned SDK, not E2B's isolation.
Every request is recorded, so tests can assert the exact sequence. Needs ``uvicorn``
(``pip install 'rlmbox-e2b[testing]'``).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from e2b.envd.process import process_connect, process_pb
from protobuf import Oneof

from rlm_core.bridge.process import confined_argv, local_process_capabilities
from rlm_core.lifecycle import StartCloseContext
from rlm_e2b._interpreter import E2BInterpreter

__all__ = [
    "DEBUG_SANDBOX_ID",
    "ENVD_VERSION",
    "STANDIN_CAPABILITIES",
    "DebugSettings",
    "E2BStandIn",
    "RecordedCall",
    "StandInSettings",
]

STANDIN_CAPABILITIES = local_process_capabilities()
"""What a sandbox of the stand-in really enforces: a local process with a clean environment,
confined like the subprocess backend's guests (see :mod:`rlm_core.bridge.confine`)."""

DEBUG_SANDBOX_ID = "debug_sandbox_id"
"""The id the SDK gives every sandbox in debug mode, where it makes no control-plane call."""

ENVD_VERSION = "0.6.4"
"""The envd version the stand-in reports; new enough for every feature the adapter uses."""

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class StandInSettings(TypedDict):
    """What :meth:`E2BStandIn.settings` returns: keyword arguments for E2BInterpreter."""

    api_key: str
    api_url: str
    sandbox_url: str


class DebugSettings(TypedDict):
    """What :meth:`E2BStandIn.debug_settings` returns: keyword arguments for E2BInterpreter."""

    debug: bool
    sandbox_url: str


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One request the stand-in received."""

    method: str
    """``"POST /v2/sandboxes"``, ``"DELETE /sandboxes"``, or an envd RPC such as ``"Start"``."""
    sandbox_id: str | None
    """The sandbox the request was for (from the path or the ``E2b-Sandbox-Id`` header)."""
    fields: Mapping[str, Any] = field(default_factory=dict)
    """The request's key fields (never the API key or access token themselves)."""


@dataclass(eq=False)
class _Sandbox:
    sandbox_id: str
    template: str
    envs: dict[str, str]
    metadata: dict[str, str]
    access_token: str | None
    home: str
    processes: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)
    gone: bool = False


class _Envd(process_connect.Process):
    """envd's Process service over local subprocesses.

    It subclasses the SDK's generated service so RPCs it does not implement answer
    UNIMPLEMENTED, as a real envd without them would.
    """

    def __init__(self, standin: E2BStandIn) -> None:
        self._standin = standin

    def _sandbox(self, method: str, ctx: RequestContext[Any, Any], **fields: Any) -> _Sandbox:
        headers = ctx.request_headers
        sandbox_id = headers.get("e2b-sandbox-id")
        self._standin._record(method, sandbox_id, fields)
        if sandbox_id == DEBUG_SANDBOX_ID and sandbox_id not in self._standin._sandboxes:
            self._standin._add_sandbox(sandbox_id, template="", envs={}, metadata={}, token=None)
        sandbox = self._standin._sandboxes.get(sandbox_id or "")
        if sandbox is None or sandbox.gone:
            # The words the E2B proxy uses, which the SDK maps to SandboxNotRunningException.
            raise ConnectError(Code.UNAVAILABLE, f"The sandbox {sandbox_id} was not found")
        if (
            sandbox.access_token is not None
            and headers.get("x-access-token") != sandbox.access_token
        ):
            raise ConnectError(Code.UNAUTHENTICATED, "invalid access token")
        return sandbox

    @staticmethod
    def _process(sandbox: _Sandbox, selector: process_pb.ProcessSelector | None) -> Any:
        pid = selector.selector.value if selector is not None and selector.selector else None
        process = sandbox.processes.get(pid) if isinstance(pid, int) else None
        if process is None:
            raise ConnectError(Code.NOT_FOUND, f"process with pid {pid} not found")
        return process

    async def start(
        self,
        request: process_pb.StartRequest,
        ctx: RequestContext[process_pb.StartRequest, process_pb.StartResponse],
        /,
    ) -> AsyncIterator[process_pb.StartResponse]:
        config = request.process or process_pb.ProcessConfig()
        sandbox = self._sandbox(
            "Start",
            ctx,
            cmd=config.cmd,
            args=list(config.args),
            envs=sorted(config.envs),
            cwd=config.cwd if config.has_field("cwd") else None,
            stdin=request.stdin,
            user=_basic_user(ctx.request_headers.get("authorization")),
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": sandbox.home,
            "LANG": "C.UTF-8",
            "USER": "user",
        }
        env.update(sandbox.envs)
        env.update(config.envs)
        cwd = config.cwd if config.has_field("cwd") and config.cwd else sandbox.home
        try:
            process = await asyncio.create_subprocess_exec(
                *confined_argv([config.cmd, *config.args], search_path=env["PATH"]),
                stdin=asyncio.subprocess.PIPE if request.stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise ConnectError(Code.INTERNAL, f"error starting process: {exc}") from exc
        sandbox.processes[process.pid] = process
        try:
            start = process_pb.ProcessEvent.StartEvent(pid=process.pid)
            yield _response(Oneof[Literal["start"], _PE.StartEvent]("start", start))
            queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(maxsize=16)

            async def pump(name: str, stream: asyncio.StreamReader | None) -> None:
                assert stream is not None
                while chunk := await stream.read(1 << 16):
                    await queue.put((name, chunk))
                await queue.put(None)

            pumps = [
                asyncio.create_task(pump("stdout", process.stdout)),
                asyncio.create_task(pump("stderr", process.stderr)),
            ]
            open_streams = 2
            try:
                while open_streams:
                    item = await queue.get()
                    if item is None:
                        open_streams -= 1
                        continue
                    name, chunk = item
                    output = (
                        Oneof[Literal["stdout"], bytes]("stdout", chunk)
                        if name == "stdout"
                        else Oneof[Literal["stderr"], bytes]("stderr", chunk)
                    )
                    data = _PE.DataEvent(output=output)
                    yield _response(Oneof[Literal["data"], _PE.DataEvent]("data", data))
                code = await process.wait()
            finally:
                for task in pumps:
                    task.cancel()
            if sandbox.gone:
                raise ConnectError(
                    Code.UNAVAILABLE,
                    f"the connection to sandbox {sandbox.sandbox_id} ended before the stream "
                    "completed",
                )
            status = f"exit status {code}" if code >= 0 else f"signal: {signal.Signals(-code).name}"
            end = _PE.EndEvent(exit_code=code if code >= 0 else -1, exited=code >= 0, status=status)
            yield _response(Oneof[Literal["end"], _PE.EndEvent]("end", end))
        finally:
            sandbox.processes.pop(process.pid, None)
            if process.returncode is None:
                _kill_group(process.pid)

    async def send_input(
        self,
        request: process_pb.SendInputRequest,
        ctx: RequestContext[process_pb.SendInputRequest, process_pb.SendInputResponse],
        /,
    ) -> process_pb.SendInputResponse:
        data = b""
        if request.input is not None and request.input.input is not None:
            data = request.input.input.value
        sandbox = self._sandbox("SendInput", ctx, pid=_pid(request.process), bytes=len(data))
        process = self._process(sandbox, request.process)
        if process.stdin is None:
            raise ConnectError(Code.FAILED_PRECONDITION, "stdin not enabled")
        try:
            process.stdin.write(data)
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ConnectError(Code.INTERNAL, f"error writing to stdin: {exc}") from exc
        return process_pb.SendInputResponse()

    async def close_stdin(
        self,
        request: process_pb.CloseStdinRequest,
        ctx: RequestContext[process_pb.CloseStdinRequest, process_pb.CloseStdinResponse],
        /,
    ) -> process_pb.CloseStdinResponse:
        sandbox = self._sandbox("CloseStdin", ctx, pid=_pid(request.process))
        process = self._process(sandbox, request.process)
        if process.stdin is not None:
            process.stdin.close()
        return process_pb.CloseStdinResponse()

    async def send_signal(
        self,
        request: process_pb.SendSignalRequest,
        ctx: RequestContext[process_pb.SendSignalRequest, process_pb.SendSignalResponse],
        /,
    ) -> process_pb.SendSignalResponse:
        sig = request.signal
        sandbox = self._sandbox(
            "SendSignal", ctx, pid=_pid(request.process), signal=getattr(sig, "name", str(sig))
        )
        process = self._process(sandbox, request.process)
        number = signal.SIGKILL if sig == process_pb.Signal.SIGKILL else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, number)
        return process_pb.SendSignalResponse()


_PE = process_pb.ProcessEvent


def _response(
    event: Oneof[Literal["start"], _PE.StartEvent]
    | Oneof[Literal["data"], _PE.DataEvent]
    | Oneof[Literal["end"], _PE.EndEvent],
) -> process_pb.StartResponse:
    return process_pb.StartResponse(event=_PE(event=event))


def _pid(selector: process_pb.ProcessSelector | None) -> int | None:
    if selector is None or selector.selector is None:
        return None
    value = selector.selector.value
    return value if isinstance(value, int) else None


def _basic_user(header: str | None) -> str | None:
    # envd takes the sandbox user as HTTP Basic credentials with an empty password.
    if not header or not header.startswith("Basic "):
        return None
    try:
        return base64.b64decode(header[6:]).decode().partition(":")[0]
    except ValueError:
        return None


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class E2BStandIn(StartCloseContext):
    """E2B's control plane and envd on ``127.0.0.1``, running sandbox commands locally.

    Use as a context manager; the server runs on its own thread and event loop, so it serves
    synchronous and asynchronous clients alike::

        with E2BStandIn() as standin:
            interp = standin.interpreter(template="base")

    Args:
        api_key: The API key the control plane accepts (any non-empty key when None).
    """

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.calls: list[RecordedCall] = []
        self._sandboxes: dict[str, _Sandbox] = {}
        self._create_failures: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._root = ""
        self._envd_app = process_connect.ProcessASGIApplication(_Envd(self))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._live_peak = 0
        self.port = 0

    _shared: E2BStandIn | None = None
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls) -> E2BStandIn:
        """The process-wide stand-in, started on first use and stopped when Python exits.

        ``E2BInterpreter(standin=True)`` uses it, so many short sessions share one server.
        """
        with cls._shared_lock:
            if cls._shared is None:
                standin = cls()
                standin.start()
                atexit.register(standin.close)
                cls._shared = standin
            return cls._shared

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start serving on a random loopback port."""
        try:
            import uvicorn
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                "the E2B stand-in needs uvicorn: pip install 'rlmbox-e2b[testing]'"
            ) from exc
        # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections; without it
        # each response's body waits 40 ms behind its head for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._root = tempfile.mkdtemp(prefix="rlm-e2b-standin-")
        config = uvicorn.Config(
            self._asgi,
            interface="asgi3",
            lifespan="off",
            log_level="error",
            access_log=False,
            timeout_graceful_shutdown=2,
            loop="asyncio",
        )
        self._server = uvicorn.Server(config)
        ready = threading.Event()

        def run() -> None:
            async def main() -> None:
                ready.set()
                await self._server.serve(sockets=[sock])

            asyncio.run(main())

        self._thread = threading.Thread(target=run, name="rlm-e2b-standin", daemon=True)
        self._thread.start()
        ready.wait(10)
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the E2B stand-in did not start")
            time.sleep(0.01)

    def close(self) -> None:
        """Kill every sandbox process, stop the server and remove the sandboxes' files."""
        if self._thread is None:
            return
        for sandbox in list(self._sandboxes.values()):
            for pid in list(sandbox.processes):
                _kill_group(pid)
        self._server.should_exit = True
        self._thread.join(15)
        self._thread = None
        shutil.rmtree(self._root, ignore_errors=True)

    # ---- what tests use ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL of both the control plane and envd."""
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> StandInSettings:
        """Keyword arguments that point an ``E2BInterpreter`` (or the SDK) at this stand-in."""
        return {
            "api_key": self.api_key or "e2b_standin",
            "api_url": self.url,
            "sandbox_url": self.url,
        }

    def interpreter(self, **options: Any) -> E2BInterpreter:
        """An ``E2BInterpreter`` on this stand-in that claims only what a local process holds."""
        return E2BInterpreter(**self.settings(), capabilities=STANDIN_CAPABILITIES, **options)

    def debug_settings(self) -> DebugSettings:
        """Settings for the SDK's debug mode: no control plane, envd at this stand-in.

        Every debug-mode sandbox shares one id, so only one session at a time works this way;
        :meth:`settings` gives each session its own sandbox and records its creation too.
        """
        return {"debug": True, "sandbox_url": self.url}

    def methods(self, *, sandbox_id: str | None = None, collapse: bool = True) -> list[str]:
        """The recorded method names in order; ``collapse`` merges immediate repeats."""
        names: list[str] = []
        with self._lock:
            calls = list(self.calls)
        for call in calls:
            if sandbox_id is not None and call.sandbox_id != sandbox_id:
                continue
            if collapse and names and names[-1] == call.method:
                continue
            names.append(call.method)
        return names

    def calls_named(self, method: str) -> list[RecordedCall]:
        """Every recorded call of one method."""
        with self._lock:
            return [c for c in self.calls if c.method == method]

    @property
    def live_sandboxes(self) -> list[str]:
        """Sandboxes created and neither killed nor vanished."""
        return [s.sandbox_id for s in self._sandboxes.values() if not s.gone]

    @property
    def peak_live_sandboxes(self) -> int:
        """The most sandboxes that were alive at the same time."""
        return self._live_peak

    def fail_next_create(self, status: int, message: str) -> None:
        """Answer the next sandbox creation with an API error, as E2B's API would."""
        self._create_failures.append((status, message))

    def vanish(self, sandbox_id: str) -> None:
        """Make a sandbox disappear, as when E2B kills it at its timeout."""
        sandbox = self._sandboxes[sandbox_id]
        sandbox.gone = True
        for pid in list(sandbox.processes):
            _kill_group(pid)

    # ---- internals ---------------------------------------------------------------------

    def _record(self, method: str, sandbox_id: str | None, fields: Mapping[str, Any]) -> None:
        with self._lock:
            self.calls.append(RecordedCall(method, sandbox_id, dict(fields)))

    async def _asgi(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith(self._envd_app.path + "/"):
            await self._envd_app(scope, receive, send)
            return
        method: str = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if method == "POST" and path == "/v2/sandboxes":
            status, answer = self._create(headers, body)
        elif method == "DELETE" and path.startswith("/sandboxes/"):
            status, answer = self._kill(headers, path.removeprefix("/sandboxes/"))
        elif method == "GET" and path == "/health":
            sandbox = self._sandboxes.get(headers.get("e2b-sandbox-id", ""))
            self._record("GET /health", headers.get("e2b-sandbox-id"), {})
            if sandbox is None or sandbox.gone:
                status, answer = 502, {"message": "The sandbox was not found", "code": 502}
            else:
                status, answer = 204, None
        else:
            self._record(f"{method} {path}", None, {})
            status, answer = 404, {"code": 404, "message": f"the stand-in does not serve {path}"}
        payload = b"" if answer is None else json.dumps(answer).encode()
        response_headers = [(b"content-type", b"application/json")] if payload else []
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})

    def _create(self, headers: Mapping[str, str], body: bytes) -> tuple[int, Any]:
        request = json.loads(body or b"{}")
        template = str(request.get("templateID", ""))
        self._record(
            "POST /v2/sandboxes",
            None,
            {
                "templateID": template,
                "timeout": request.get("timeout"),
                "metadata": request.get("metadata"),
                "envVars": sorted(request.get("envVars") or {}),
                "allow_internet_access": request.get("allow_internet_access"),
            },
        )
        key = headers.get("x-api-key")
        if not key or (self.api_key is not None and key != self.api_key):
            return 401, {"code": 401, "message": "Invalid API key"}
        if self._create_failures:
            status, message = self._create_failures.pop(0)
            return status, {"code": status, "message": message}
        sandbox = self._add_sandbox(
            "sbx" + secrets.token_hex(6),
            template=template,
            envs={str(k): str(v) for k, v in (request.get("envVars") or {}).items()},
            metadata={str(k): str(v) for k, v in (request.get("metadata") or {}).items()},
            token=secrets.token_hex(16),
        )
        return 201, {
            "templateID": template,
            "sandboxID": sandbox.sandbox_id,
            "clientID": "standin",
            "envdVersion": ENVD_VERSION,
            "envdAccessToken": sandbox.access_token,
        }

    def _add_sandbox(
        self,
        sandbox_id: str,
        *,
        template: str,
        envs: dict[str, str],
        metadata: dict[str, str],
        token: str | None,
    ) -> _Sandbox:
        home = os.path.join(self._root, sandbox_id)
        os.makedirs(home, exist_ok=True)
        sandbox = _Sandbox(sandbox_id, template, envs, metadata, token, home)
        self._sandboxes[sandbox_id] = sandbox
        self._live_peak = max(self._live_peak, len(self.live_sandboxes))
        return sandbox

    def _kill(self, headers: Mapping[str, str], sandbox_id: str) -> tuple[int, Any]:
        self._record("DELETE /sandboxes", sandbox_id, {})
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.gone:
            return 404, {"code": 404, "message": f"sandbox {sandbox_id} not found"}
        self.vanish(sandbox_id)
        return 204, None
