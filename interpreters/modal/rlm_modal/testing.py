"""A local stand-in for Modal's control plane and command router, for tests without the cloud.

:class:`ModalStandIn` serves exactly the gRPC calls the real ``modal`` SDK makes for
:class:`~rlm_modal.ModalInterpreter`, on ``127.0.0.1`` at a random port, built on the service
base classes the SDK ships in ``modal_proto``. Exec'd commands run as local subprocesses, so it
tests the adapter's use of the pinned SDK, not Modal's isolation. Every call is recorded so a
test can assert the exact sequence, and an SDK upgrade that changes the protocol fails loudly.
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypedDict

import grpclib.server
from grpclib import GRPCError, Status
from modal_proto import api_grpc, api_pb2, task_command_router_grpc
from modal_proto import task_command_router_pb2 as sr_pb2

from rlm_core.bridge.process import confined_argv, local_process_capabilities
from rlm_core.lifecycle import StartCloseContext
from rlm_modal._interpreter import ModalInterpreter

__all__ = ["STANDIN_CAPABILITIES", "ModalStandIn", "RecordedCall", "StandInSettings"]

STANDIN_CAPABILITIES = local_process_capabilities()
"""What a sandbox of the stand-in really enforces: a local process with a clean environment,
confined like the subprocess backend's guests (see :mod:`rlm_core.bridge.confine`).

Pass it as ``ModalInterpreter(capabilities=...)`` so isolation probes are not claimed falsely.
"""


class StandInSettings(TypedDict):
    """What :meth:`ModalStandIn.settings` returns: keyword arguments for ModalInterpreter."""

    server_url: str
    token_id: str
    token_secret: str


_TOKEN_ID = "ak-standin"
_TOKEN_SECRET = "as-standin"  # the stand-in accepts any token; these only make it non-empty

_STDIO_CHUNK = 256 * 1024
# The guest's environment is rebuilt from scratch, as in a real container: host secrets
# (including the dummy Modal token the tests set) never reach the exec'd command.
_SAFE_ENV = ("PATH", "LANG", "LC_ALL", "TZ")

Handler = Callable[[Any, "grpclib.server.Stream[Any, Any]"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One RPC the stand-in received: the method name and the decoded request."""

    method: str
    request: Any
    """The decoded protobuf request (None for an RPC the stand-in does not serve)."""


@dataclass
class _Exec:
    process: asyncio.subprocess.Process
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    stdin_offset: int = 0
    stdout_done: bool = False
    stderr_done: bool = False
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


@dataclass
class _Sandbox:
    sandbox_id: str
    task_id: str
    definition: api_pb2.Sandbox
    workdir: str
    execs: dict[str, _Exec] = field(default_factory=dict)
    terminated: bool = False
    timer: asyncio.TimerHandle | None = None


def _unsigned_jwt(subject: str, lifetime_s: float = 3600.0) -> str:
    """A JWT the SDK can read the expiry of; the SDK never verifies signatures."""

    def part(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return ".".join(
        [
            part({"alg": "none", "typ": "JWT"}),
            part({"sub": subject, "exp": int(time.time() + lifetime_s)}),
            "",
        ]
    )


def _with_fallbacks(cls: type[Any]) -> type[Any]:
    """Make every RPC a servicer does not define answer UNIMPLEMENTED, and record it.

    The SDK's base classes declare each RPC abstract; a call the stand-in does not serve must
    show up in the recorded sequence, so that an SDK upgrade that starts using it fails a test.
    """
    for name in list(getattr(cls, "__abstractmethods__", ())):

        def make(rpc: str) -> Handler:
            async def unimplemented(
                self: _Servicer, stream: grpclib.server.Stream[Any, Any]
            ) -> None:
                self.owner._record(rpc, None)
                raise GRPCError(Status.UNIMPLEMENTED, f"the Modal stand-in does not serve {rpc}")

            return unimplemented

        setattr(cls, name, make(name))
    abc.update_abstractmethods(cls)
    return cls


class _Servicer:
    def __init__(self, owner: ModalStandIn) -> None:
        self.owner = owner

    async def _request(self, name: str, stream: grpclib.server.Stream[Any, Any]) -> Any:
        request = await stream.recv_message()
        self.owner._record(name, request)
        self.owner._check_injected(name)
        return request


@_with_fallbacks
class _ControlPlane(_Servicer, api_grpc.ModalClientBase):
    """The few control-plane RPCs ``App.lookup`` and ``Sandbox.create/terminate`` make."""

    def _check_token(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        metadata: Mapping[str, Any] = stream.metadata or {}
        if not metadata.get("x-modal-token-id") or not metadata.get("x-modal-token-secret"):
            raise GRPCError(Status.UNAUTHENTICATED, "Token missing (the stand-in wants any token)")

    async def AppGetOrCreate(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        self._check_token(stream)
        await self._request("AppGetOrCreate", stream)
        await stream.send_message(api_pb2.AppGetOrCreateResponse(app_id="ap-standin"))

    async def EnvironmentGetOrCreate(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        self._check_token(stream)
        await self._request("EnvironmentGetOrCreate", stream)
        # The SDK refuses an id without the "en-" prefix and an empty image builder version.
        settings = api_pb2.EnvironmentSettings(image_builder_version="2025.06")
        await stream.send_message(
            api_pb2.EnvironmentGetOrCreateResponse(
                environment_id="en-standin",
                metadata=api_pb2.EnvironmentMetadata(name="main", settings=settings),
            )
        )

    async def ImageGetOrCreate(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        self._check_token(stream)
        await self._request("ImageGetOrCreate", stream)
        # No build: the "image" is whatever python3 the host has on PATH.
        result = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS)
        if self.owner._image_failures:
            result = api_pb2.GenericResult(
                status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE,
                exception=self.owner._image_failures.pop(0),
            )
        await stream.send_message(
            api_pb2.ImageGetOrCreateResponse(image_id="im-standin", result=result)
        )

    async def AuthTokenGet(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        self._check_token(stream)
        await self._request("AuthTokenGet", stream)
        await stream.send_message(
            api_pb2.AuthTokenGetResponse(token=_unsigned_jwt("standin-client"))
        )

    async def SandboxCreateV2(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        self._check_token(stream)
        request = await self._request("SandboxCreateV2", stream)
        sandbox = self.owner._new_sandbox(request.definition)
        access = api_pb2.CommandRouterAccess(url=self.owner.url, jwt=self.owner._router_jwt)
        await stream.send_message(
            api_pb2.SandboxCreateV2Response(
                sandbox_id=sandbox.sandbox_id, task_id=sandbox.task_id, command_router_access=access
            )
        )

    async def SandboxTerminateV2(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        self._check_token(stream)
        request = await self._request("SandboxTerminateV2", stream)
        sandbox = self.owner._sandboxes.get(request.sandbox_id)
        if sandbox is None:
            raise GRPCError(Status.NOT_FOUND, f"sandbox {request.sandbox_id} not found")
        await self.owner._terminate(sandbox)
        await stream.send_message(api_pb2.SandboxTerminateResponse())


@_with_fallbacks
class _CommandRouter(_Servicer, task_command_router_grpc.TaskCommandRouterBase):
    """The per-task router: start a command, write its stdin, stream its stdout and stderr."""

    def _exec_for(
        self, stream: grpclib.server.Stream[Any, Any], task_id: str, exec_id: str
    ) -> _Exec:
        sandbox = self._sandbox_for(stream, task_id)
        found = sandbox.execs.get(exec_id)
        if found is None:
            raise GRPCError(Status.NOT_FOUND, f"exec {exec_id} not found")
        return found

    def _sandbox_for(self, stream: grpclib.server.Stream[Any, Any], task_id: str) -> _Sandbox:
        metadata: Mapping[str, Any] = stream.metadata or {}
        if metadata.get("authorization") != f"Bearer {self.owner._router_jwt}":
            raise GRPCError(Status.UNAUTHENTICATED, "the router wants the JWT from SandboxCreateV2")
        for sandbox in self.owner._sandboxes.values():
            if sandbox.task_id == task_id and not sandbox.terminated:
                return sandbox
        raise GRPCError(Status.NOT_FOUND, f"task {task_id} not found (the sandbox is gone)")

    async def TaskExecStart(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await self._request("TaskExecStart", stream)
        sandbox = self._sandbox_for(stream, request.task_id)
        env = {k: v for k, v in os.environ.items() if k in _SAFE_ENV}
        env.update({source.env_name: source.value for source in request.secret_sources})
        try:
            process = await asyncio.create_subprocess_exec(
                *confined_argv(request.command_args, search_path=env.get("PATH")),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=request.workdir or sandbox.workdir,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise GRPCError(
                Status.FAILED_PRECONDITION, f"cannot run {request.command_args[0]!r}: {exc}"
            ) from None
        started = _Exec(process)
        sandbox.execs[request.exec_id] = started
        self.owner._spawn(self._pump(started, "stdout"))
        self.owner._spawn(self._pump(started, "stderr"))
        await stream.send_message(sr_pb2.TaskExecStartResponse())

    async def _pump(self, running: _Exec, name: str) -> None:
        source = getattr(running.process, name)
        assert source is not None
        sink: bytearray = getattr(running, name)
        while True:
            chunk = await source.read(_STDIO_CHUNK)
            async with running.changed:
                if chunk:
                    sink += chunk
                else:
                    setattr(running, f"{name}_done", True)
                running.changed.notify_all()
            if not chunk:
                return

    async def TaskExecStdinWrite(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await self._request("TaskExecStdinWrite", stream)
        running = self._exec_for(stream, request.task_id, request.exec_id)
        stdin = running.process.stdin
        assert stdin is not None
        # Offsets make retried writes idempotent, as on the real router.
        skip = max(0, running.stdin_offset - request.offset)
        data = request.data[skip:]
        try:
            if data:
                stdin.write(data)
                await stdin.drain()
                running.stdin_offset += len(data)
            if request.eof:
                stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the command exited; as on a real pipe, the bytes are lost
        await stream.send_message(sr_pb2.TaskExecStdinWriteResponse())

    async def TaskExecStdioRead(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await self._request("TaskExecStdioRead", stream)
        running = self._exec_for(stream, request.task_id, request.exec_id)
        name = (
            "stdout"
            if request.file_descriptor == sr_pb2.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT
            else "stderr"
        )
        offset = request.offset
        while True:
            async with running.changed:
                buffer: bytearray = getattr(running, name)
                while len(buffer) <= offset and not getattr(running, f"{name}_done"):
                    if self.owner._is_gone(request.task_id):
                        raise GRPCError(Status.NOT_FOUND, f"task {request.task_id} not found")
                    await running.changed.wait()
                chunk = bytes(buffer[offset : offset + _STDIO_CHUNK])
            if not chunk:
                if self.owner._is_gone(request.task_id):
                    raise GRPCError(Status.NOT_FOUND, f"task {request.task_id} not found")
                return
            await stream.send_message(sr_pb2.TaskExecStdioReadResponse(data=chunk))
            offset += len(chunk)

    async def TaskExecWait(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await self._request("TaskExecWait", stream)
        running = self._exec_for(stream, request.task_id, request.exec_id)
        code = await running.process.wait()
        if code < 0:
            await stream.send_message(sr_pb2.TaskExecWaitResponse(signal=-code))
        else:
            await stream.send_message(sr_pb2.TaskExecWaitResponse(code=code))


class _Server(grpclib.server.Server):
    """A grpclib server that can drop its open connections, as a vanished host would."""

    def __init__(self, handlers: list[Any]) -> None:
        super().__init__(handlers)
        self.protocols: list[Any] = []

    def _protocol_factory(self) -> Any:
        protocol = super()._protocol_factory()
        self.protocols.append(protocol)
        return protocol

    def drop_connections(self) -> None:
        # Without this the client's connections stay open to a loop that no longer runs, and
        # the SDK notices only by keepalive, about 40 s later.
        for protocol in self.protocols:
            processor = getattr(protocol, "processor", None)
            if processor is not None:
                processor.close()


class ModalStandIn(StartCloseContext):
    """A Modal server on ``127.0.0.1`` for the real SDK, running in a background thread.

    Use it as a context manager, then point the SDK at :attr:`url` (``MODAL_SERVER_URL``, or
    ``ModalInterpreter(server_url=...)``) with any non-empty token id and secret::

        with ModalStandIn() as standin:
            interp = ModalInterpreter(server_url=standin.url, token_id="ak-test",
                                      token_secret="as-test", capabilities=STANDIN_CAPABILITIES)

    Exec'd commands run on this host as the current user in a fresh temporary directory with
    a clean environment. Sandboxes honour their ``timeout`` (the process is killed).
    """

    def __init__(self) -> None:
        self.url = ""
        self._calls: list[RecordedCall] = []
        self._calls_lock = threading.Lock()
        self._sandboxes: dict[str, _Sandbox] = {}
        self._ids = itertools.count(1)
        self._router_jwt = _unsigned_jwt("standin-router")
        self._injected: dict[str, list[GRPCError]] = {}
        self._image_failures: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: _Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    _shared: ClassVar[ModalStandIn | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def shared(cls) -> ModalStandIn:
        """The process-wide stand-in, started on first use and closed when Python exits.

        ``ModalInterpreter(standin=True)`` (spec ``modal?standin=true``) uses it.
        """
        with cls._shared_lock:
            if cls._shared is None:
                standin = cls().start()
                atexit.register(standin.close)
                cls._shared = standin
            return cls._shared

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving; returns once :attr:`url` accepts connections."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start(), which re-raises it
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="modal-standin", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        # mypy cannot see that _with_fallbacks made the servicers concrete.
        servicers: list[Any] = [_ControlPlane(self), _CommandRouter(self)]  # type: ignore[abstract]
        self._server = _Server(servicers)
        await self._server.start("127.0.0.1", 0)
        listening = self._server._server
        assert isinstance(listening, asyncio.Server)
        port = listening.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        """Kill every sandbox process, stop the server and its thread; idempotent."""
        loop, self._loop = self._loop, None
        if loop is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        future.result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=30)

    async def _shutdown(self) -> None:
        for sandbox in list(self._sandboxes.values()):
            await self._terminate(sandbox)
        if self._server is not None:
            self._server.close()
            self._server.drop_connections()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- what tests look at and control ------------------------------------------------

    def settings(self) -> StandInSettings:
        """Keyword arguments that point a ``ModalInterpreter`` at this stand-in."""
        return {"server_url": self.url, "token_id": _TOKEN_ID, "token_secret": _TOKEN_SECRET}

    def interpreter(self, **options: Any) -> ModalInterpreter:
        """A ``ModalInterpreter`` on this stand-in that claims only what a local process holds."""
        return ModalInterpreter(**self.settings(), capabilities=STANDIN_CAPABILITIES, **options)

    @property
    def calls(self) -> list[RecordedCall]:
        """Every RPC received so far, in order (a copy)."""
        with self._calls_lock:
            return list(self._calls)

    def methods(self) -> list[str]:
        """The names of the RPCs received so far, in order."""
        return [call.method for call in self.calls]

    def clear_calls(self) -> None:
        """Forget the recorded calls."""
        with self._calls_lock:
            self._calls.clear()

    @property
    def sandbox_ids(self) -> list[str]:
        """Every sandbox created so far."""
        return list(self._sandboxes)

    def running_sandbox_ids(self) -> list[str]:
        """The sandboxes that were neither terminated nor timed out."""
        return [s.sandbox_id for s in self._sandboxes.values() if not s.terminated]

    def definition(self, sandbox_id: str) -> api_pb2.Sandbox:
        """The definition (image, resources, timeout, network) a sandbox was created with."""
        return self._sandboxes[sandbox_id].definition

    def fail_next(self, method: str, status: Status, message: str) -> None:
        """Make the next call of ``method`` fail with a gRPC ``status`` (quota, bad image, ...)."""
        self._injected.setdefault(method, []).append(GRPCError(status, message))

    def fail_next_image_build(self, message: str) -> None:
        """Make the next image "build" fail the way Modal reports a failed build."""
        self._image_failures.append(message)

    def vanish(self, sandbox_id: str) -> None:
        """Terminate a sandbox behind the client's back, as a crash or a console kill would."""
        loop = self._loop
        assert loop is not None, "the stand-in is not running"
        asyncio.run_coroutine_threadsafe(self._terminate(self._sandboxes[sandbox_id]), loop).result(
            timeout=30
        )

    # ---- internals (run on the stand-in's loop) ----------------------------------------

    def _record(self, method: str, request: Any) -> None:
        with self._calls_lock:
            self._calls.append(RecordedCall(method, request))

    def _check_injected(self, method: str) -> None:
        pending = self._injected.get(method)
        if pending:
            raise pending.pop(0)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _new_sandbox(self, definition: api_pb2.Sandbox) -> _Sandbox:
        n = next(self._ids)
        sandbox = _Sandbox(
            sandbox_id=f"sb-standin{n}",
            # The SDK tells V2 tasks by this shape ("ta-" ... "V").
            task_id=f"ta-standin{n}V",
            definition=definition,
            workdir=tempfile.mkdtemp(prefix="rlm-modal-standin-"),
        )
        self._sandboxes[sandbox.sandbox_id] = sandbox
        if definition.timeout_secs:
            loop = asyncio.get_running_loop()
            sandbox.timer = loop.call_later(
                definition.timeout_secs, lambda: self._spawn(self._terminate(sandbox))
            )
        return sandbox

    def _is_gone(self, task_id: str) -> bool:
        return any(s.terminated for s in self._sandboxes.values() if s.task_id == task_id)

    async def _terminate(self, sandbox: _Sandbox) -> None:
        if sandbox.terminated:
            return
        sandbox.terminated = True
        if sandbox.timer is not None:
            sandbox.timer.cancel()
        for running in sandbox.execs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(running.process.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(running.process.wait(), 10)
            async with running.changed:
                running.changed.notify_all()
        shutil.rmtree(sandbox.workdir, ignore_errors=True)


def main() -> None:
    """``python -m rlm_modal.testing``: serve until interrupted, for out-of-process use.

    Prints the ``MODAL_SERVER_URL=...`` line to export (plus dummy tokens) and serves until
    SIGINT or SIGTERM, so a CI script can run ``pytest --pyargs rlm_conformance
    --rlm-interpreter modal`` against it.
    """
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ModalStandIn() as standin:
        print(f"MODAL_SERVER_URL={standin.url}", flush=True)  # noqa: T201 - the CLI's output
        print(f"MODAL_TOKEN_ID={_TOKEN_ID}\nMODAL_TOKEN_SECRET={_TOKEN_SECRET}", flush=True)  # noqa: T201
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
