"""ChannelInterpreter: the whole interpreter contract over any byte channel to a guest process.

A backend that runs ``guest.py`` somewhere (a local process, a container, a cloud sandbox, a
WebAssembly runtime) subclasses :class:`ChannelInterpreter`, states its capabilities, and
implements :meth:`ChannelInterpreter.open_channel`; framing, bootstrapping, tool callbacks,
variables, timeouts, interrupts and validation of everything the guest sends live here, once.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, Protocol, Self, runtime_checkable

import anyio

from rlm_core.bridge.base import SessionBookkeeping
from rlm_core.bridge.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER,
    PROTOCOL_VERSION,
    FrameReader,
    bootstrap_frame,
    decode_result,
    encode_frame,
    require,
)
from rlm_core.checks import utf8_size
from rlm_core.errors import (
    BridgeProtocolError,
    ConfigError,
    GuestRefusedError,
    InterpreterUnavailableError,
    SessionLostError,
)
from rlm_core.interpreter import (
    DEFAULT_MAX_OUTPUT_CHARS,
    JSON,
    Capabilities,
    ExecutionResult,
    HostTool,
    SubmitField,
    VariableValue,
)
from rlm_core.tools import call_host_tool

__all__ = ["ChannelInterpreter", "GuestChannel"]

_SEND_CHUNK = 4 * 1024 * 1024


@runtime_checkable
class GuestChannel(Protocol):
    """A byte stream to a guest runtime started with ``loader_argv()`` (or an equivalent)."""

    async def send(self, data: bytes | memoryview) -> None:
        """Write all of ``data`` to the guest's stdin."""
        ...

    async def receive(self) -> bytes:
        """Return the next bytes the guest wrote to its stdout; ``b""`` at end of stream."""
        ...

    async def aclose(self) -> None:
        """Stop the guest and release everything; idempotent, never raises."""
        ...

    def diagnostics(self) -> str:
        """What is known about the guest's end (exit status, stderr tail), for error messages."""
        ...


def _finite_or_none(timeout: float | None) -> float | None:
    """The cell timeout as sent, for guests that enforce it themselves (JSON has no inf)."""
    return timeout if timeout is not None and math.isfinite(timeout) else None


class ChannelInterpreter(SessionBookkeeping, abc.ABC):
    """Implements :class:`~rlm_core.interpreter.Interpreter` over a :class:`GuestChannel`.

    Subclasses provide :attr:`capabilities` and :meth:`open_channel`. Tunables are class
    attributes a subclass (or a user) may override.
    """

    start_timeout_s: float = 60.0
    """How long the guest may take to announce itself after the channel opens."""
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """The largest message the host accepts from the guest."""
    reply_timeout_s: float = 60.0
    """How long register/set_variables may take per 100 MB before the guest counts as lost."""

    def __init__(self, *, interrupt_grace_s: float | None = None) -> None:
        super().__init__(interrupt_grace_s=interrupt_grace_s)
        self._channel: GuestChannel | None = None
        self._reader: FrameReader | None = None
        self._ids = itertools.count(1)
        self.guest_info: dict[str, JSON] = {}

    # ---- what a backend provides -------------------------------------------------------

    @classmethod
    def from_url(cls, target: str, **options: Any) -> Self:
        """Build from a spec's target, ``name://TARGET?options`` (the registry calls this).

        By default a backend takes no target; one that does (an image, a Python path)
        overrides this and says what the target means.
        """
        if target:
            raise ConfigError(
                f"the {cls.__name__} interpreter takes no target (got {target!r}); pass options"
            )
        return cls(**options)

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend enforces."""

    @abc.abstractmethod
    async def open_channel(self) -> GuestChannel:
        """Start a guest runtime in the sandbox and return a channel to its stdin/stdout.

        The guest is started with :func:`rlm_core.bridge.protocol.loader_argv`; the host then
        sends the runtime as the first frame.

        Raises:
            InterpreterUnavailableError: The sandbox cannot be created here; say how to fix it.
        """

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the channel, bootstrap the guest and wait for it to announce itself.

        Raises:
            InterpreterUnavailableError: The sandbox cannot run here, or the guest died before
                it said ready and :meth:`diagnose_failed_start` says why.
            SessionLostError: The guest died while starting, for no reason the backend knows.
        """
        self._check_open()
        async with self._lock:
            if self._channel is not None:
                return
            try:
                await self._boot()
            except SessionLostError as lost:
                diagnosis = self.diagnose_failed_start(lost)
                if diagnosis is None:
                    raise
                raise diagnosis from lost

    def diagnose_failed_start(self, lost: SessionLostError) -> InterpreterUnavailableError | None:
        """Say why a guest died before it was ready, if that is a set-up problem.

        A backend returns an :class:`InterpreterUnavailableError` naming the fix (a missing
        Python, a runtime that cannot start); ``None`` keeps it a lost session.
        """
        return None

    async def _boot(self) -> None:
        channel = await self.open_channel()
        self._channel = channel
        self._reader = FrameReader(channel.receive, max_frame_bytes=self.max_frame_bytes)
        await self._send(bootstrap_frame())
        ready = None
        with anyio.move_on_after(self.start_timeout_s):
            ready = await self._read()
        if ready is None:
            await self._lose(f"the guest did not start within {self.start_timeout_s:g} s", None)
        assert ready is not None
        if ready.get("t") != "ready" or ready.get("protocol") != PROTOCOL_VERSION:
            await self._fail_protocol(
                f"the guest announced {ready!r:.200}; expected protocol {PROTOCOL_VERSION}"
            )
        self.guest_info = dict(ready)
        if self.max_frame_bytes != DEFAULT_MAX_FRAME_BYTES:
            await self._request(
                {"t": "configure", "max_frame_bytes": self.max_frame_bytes},
                request="take the frame limit",
            )

    async def aclose(self) -> None:
        """Ask the guest to exit, then stop it; idempotent."""
        if self._closed:
            return
        self._closed = True
        channel, self._channel = self._channel, None
        if channel is None:
            return
        with anyio.CancelScope(shield=True):
            if self._lost is None:
                with anyio.move_on_after(1.0), contextlib.suppress(Exception):
                    # The guest may already be gone; we close the channel anyway.
                    await channel.send(encode_frame({"t": "shutdown"}))
            await channel.aclose()

    # ---- contract ----------------------------------------------------------------------

    async def register(
        self,
        tools: Mapping[str, HostTool] | None = None,
        outputs: Sequence[SubmitField] | None = None,
    ) -> None:
        """Expose host tools to the guest and give SUBMIT its parameters."""
        tools = dict(tools or {})
        specs = self._check_registration(tools, outputs)
        output_json: JSON = None
        if outputs is not None:
            output_json = [{"name": o.name, "type": o.type} for o in outputs]
        async with self._lock:
            self._check_usable()
            await self._request(
                {"t": "register", "tools": [s.to_json() for s in specs], "outputs": output_json},
                request="register the tools",
            )
            self._tools = tools

    async def set_variables(self, values: Mapping[str, VariableValue]) -> None:
        """Bind guest globals; strings and bytes travel raw, other values as JSON text."""
        self._check_variables(values)
        specs: list[JSON] = []
        payloads: list[bytes | str] = []
        sizes: list[int] = []
        limit = self.capabilities.max_variable_bytes
        for name, value in values.items():
            data: bytes | str
            if isinstance(value, str):
                # Encoded piece by piece while sending: a 1 GB string is never copied whole.
                try:
                    kind, data, size = "str", value, utf8_size(value)
                except UnicodeEncodeError as exc:
                    raise TypeError(
                        f"variable {name!r} is a str that is not valid Unicode ({exc.reason} at "
                        f"index {exc.start}); fix the text or pass bytes"
                    ) from None
            elif isinstance(value, bytes):
                kind, data, size = "bytes", value, len(value)
            else:
                kind = "json"
                data = json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
                size = len(data)
            if limit is not None and size > limit:
                raise ConfigError(
                    f"variable {name!r} is {size:,} bytes; this backend accepts at most "
                    f"{limit:,} bytes per variable (capabilities.max_variable_bytes). Split it, "
                    "or choose a backend with a larger limit."
                )
            specs.append({"name": name, "kind": kind, "size": size})
            payloads.append(data)
            sizes.append(size)
        async with self._lock:
            self._check_usable()
            total = sum(sizes)
            message_id = next(self._ids)
            body = json.dumps(
                {"t": "vars", "id": message_id, "vars": specs}, ensure_ascii=False
            ).encode("utf-8")
            await self._send_parts(HEADER.pack(len(body), total) + body, payloads)
            await self._await_done(message_id, size_hint=total, request="bind the variables")
            self._variable_names |= values.keys()

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    ) -> ExecutionResult:
        """Run a cell, serving the guest's tool calls until it reports a result."""
        self._check_cell(code, max_output_chars)
        async with self._lock:
            self._check_usable()
            exec_id = next(self._ids)
            started = time.perf_counter()
            await self._send(
                encode_frame(
                    {
                        "t": "exec",
                        "id": exec_id,
                        "code": code,
                        "max_output_chars": max_output_chars,
                        "timeout": _finite_or_none(timeout),
                    }
                )
            )
            try:
                message = await self._run_cell(exec_id, timeout)
                return decode_result(message, time.perf_counter() - started)
            except BridgeProtocolError as exc:
                if self._lost is None:  # raised by validation: end the session first
                    await self._fail_protocol(str(exc))
                raise

    async def _run_cell(self, exec_id: int, timeout: float | None) -> dict[str, JSON]:
        """Serve the cell until its result; on timeout interrupt it, then kill if need be."""
        message: dict[str, JSON] | None = None
        with anyio.move_on_after(timeout):
            message = await self._until_result(exec_id)
        if message is None:
            await self._send(encode_frame({"t": "interrupt", "id": exec_id}))
            with anyio.move_on_after(self.interrupt_grace_s):
                message = await self._until_result(exec_id)
            if message is None:
                await self._lose(
                    f"the cell ran past its {timeout:g} s timeout and did not stop when "
                    "interrupted, so the sandbox was stopped; its variables are gone",
                    None,
                )
            assert message is not None
        return message

    # ---- internals ---------------------------------------------------------------------

    @property
    def _started(self) -> bool:
        return self._channel is not None

    async def _send(self, data: bytes) -> None:
        await self._send_parts(data, ())

    async def _send_parts(self, head: bytes, parts: Sequence[bytes | str]) -> None:
        # Shielded: a write cut off by a cancel would desynchronise the channel.
        assert self._channel is not None
        with anyio.CancelScope(shield=True):
            try:
                await self._channel.send(head)
                for part in parts:
                    if isinstance(part, str):
                        for offset in range(0, len(part), _SEND_CHUNK):
                            chunk = part[offset : offset + _SEND_CHUNK].encode("utf-8")
                            await self._channel.send(chunk)
                        continue
                    view = memoryview(part)
                    for offset in range(0, len(view), _SEND_CHUNK):
                        await self._channel.send(view[offset : offset + _SEND_CHUNK])
            except Exception as exc:
                await self._lose("the channel to the guest broke while sending", exc)

    async def _read(self) -> dict[str, JSON]:
        assert self._reader is not None
        try:
            message = await self._reader.read()
        except BridgeProtocolError as exc:
            await self._fail_protocol(str(exc))
            raise AssertionError("unreachable") from None
        except anyio.get_cancelled_exc_class():
            raise
        except (EOFError, Exception) as exc:
            await self._lose("the guest stopped answering", exc)
        return message

    async def _request(self, message: dict[str, JSON], *, request: str) -> None:
        message_id = next(self._ids)
        await self._send(encode_frame({**message, "id": message_id}))
        await self._await_done(message_id, size_hint=0, request=request)

    async def _await_done(self, message_id: int, *, size_hint: int, request: str) -> None:
        budget = self.reply_timeout_s * (1 + size_hint / 100_000_000)
        reply = None
        with anyio.move_on_after(budget):
            reply = await self._read()
        if reply is None:
            await self._lose(f"the guest did not answer within {budget:g} s", None)
        assert reply is not None
        if reply.get("t") != "done" or reply.get("id") != message_id:
            await self._fail_protocol(
                f"expected 'done' for request {message_id}, got {reply!r:.200}"
            )
        error = reply.get("error")
        if error is not None:
            if not isinstance(error, dict):
                await self._fail_protocol("the guest's 'done' has an invalid 'error'")
            assert isinstance(error, dict)
            error = {"t": "done", **error}  # names the message if a field is invalid
            refused = GuestRefusedError(
                require(error, "type", str), require(error, "message", str), request=request
            )
            with anyio.CancelScope(shield=True):  # its state after a half-done request is unknown
                self._lost = str(refused)
                if self._channel is not None:
                    await self._channel.aclose()
            raise refused

    async def _until_result(self, exec_id: int) -> dict[str, JSON]:
        while True:
            message = await self._read()
            kind = message.get("t")
            if kind == "call":
                await self._serve_call(message)
            elif kind == "result" and message.get("id") == exec_id:
                return message
            else:
                await self._fail_protocol(f"unexpected {kind!r} message while a cell ran")

    async def _serve_call(self, message: dict[str, JSON]) -> None:
        call_id = require(message, "id", int)
        name = require(message, "name", str)
        args = require(message, "args", list)
        kwargs = require(message, "kwargs", dict)
        reply = await call_host_tool(self, self._tools, name, args, kwargs)
        reply_frame = encode_frame({"t": "reply", "id": call_id, **reply})
        if len(reply_frame) > self.max_frame_bytes:
            too_large = (
                f"{name}() returned {len(reply_frame):,} bytes of JSON, over the "
                f"{self.max_frame_bytes:,}-byte frame limit; return less, or pass large data "
                "to the sandbox as a variable"
            )
            error = {"type": "ValueError", "message": too_large}
            reply_frame = encode_frame({"t": "reply", "id": call_id, "ok": False, "error": error})
        await self._send(reply_frame)

    async def _lose(self, reason: str, cause: BaseException | None) -> NoReturn:
        channel = self._channel
        details = ""
        if channel is not None:
            with anyio.CancelScope(shield=True):
                await channel.aclose()
            details = channel.diagnostics()
        self._lost = reason + (f" ({details})" if details else "")
        raise SessionLostError(self._lost) from cause

    async def _fail_protocol(self, reason: str) -> NoReturn:
        channel = self._channel
        if channel is not None:
            with anyio.CancelScope(shield=True):
                await channel.aclose()
        self._lost = f"protocol violation: {reason}"
        raise BridgeProtocolError(reason)
