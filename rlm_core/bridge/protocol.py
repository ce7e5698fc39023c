"""The host side of the framed host/guest protocol: decoding with bounds, and validation.

A frame is a 12-byte header (``>IQ``: JSON length, attachment length), a UTF-8 JSON object,
and an optional raw attachment. The encoder and the header format live in ``guest.py`` so both
ends share one definition; this module adds what only the host needs: a streaming decoder that
refuses oversized frames, and checks that turn anything malformed into BridgeProtocolError.
The message catalogue is documented in ``docs/protocol.md``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rlm_core.bridge.guest import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER,
    PROTOCOL_VERSION,
    encode_frame,
)
from rlm_core.errors import BridgeProtocolError
from rlm_core.interpreter import JSON, CodeError, ExecutionResult

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "GUEST_MESSAGE_TYPES",
    "HEADER",
    "PROTOCOL_VERSION",
    "FrameReader",
    "bootstrap_frame",
    "decode_code_error",
    "decode_result",
    "encode_frame",
    "loader_argv",
    "require",
]

GUEST_MESSAGE_TYPES = frozenset({"ready", "done", "call", "result"})
"""Every message type a guest may send; anything else ends the session."""

T = TypeVar("T")

_LOADER = (
    "import sys,struct;r=sys.stdin.buffer;"
    f"n,m=struct.unpack({HEADER.format!r},r.read({HEADER.size}));r.read(n);"
    "exec(compile(r.read(m),'<rlm-guest>','exec'),{'__name__':'__rlm_guest__'})"
)
"""Reads the boot frame (header from guest.HEADER, the one definition) and runs its source."""


def loader_argv(python: str = "python3") -> list[str]:
    """The command that starts a guest: the interpreter reads its runtime from stdin.

    ``-I`` keeps the guest from importing anything from its working directory or user site.
    """
    return [python, "-I", "-u", "-c", _LOADER]


def bootstrap_frame() -> bytes:
    """The first frame a host sends: the guest runtime's own source as the attachment."""
    from rlm_core.bridge import guest

    with open(guest.__file__, "rb") as handle:
        source = handle.read()
    return encode_frame({"t": "boot", "protocol": PROTOCOL_VERSION}, source)


class FrameReader:
    """Decodes frames from a byte source, enforcing a size bound before buffering anything."""

    def __init__(
        self,
        receive: Callable[[], Awaitable[bytes]],
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self._receive = receive
        self._buffer = bytearray()
        self._max = max_frame_bytes

    async def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            chunk = await self._receive()
            if not chunk:
                raise EOFError("the guest closed its end of the channel")
            self._buffer += chunk

    async def read(self) -> dict[str, JSON]:
        """Return the next frame's message (guests send no attachments).

        Raises:
            EOFError: The channel ended (the caller decides whether the session is lost).
            BridgeProtocolError: The frame is oversized, not UTF-8 JSON, or not an object.
        """
        await self._fill(HEADER.size)
        json_len, blob_len = HEADER.unpack_from(self._buffer)
        if blob_len:
            raise BridgeProtocolError("the guest sent an attachment, which guests may not send")
        if json_len > self._max:
            raise BridgeProtocolError(
                f"the guest sent a {json_len:,}-byte frame; the limit is {self._max:,} bytes"
            )
        await self._fill(HEADER.size + json_len)
        body = bytes(self._buffer[HEADER.size : HEADER.size + json_len])
        del self._buffer[: HEADER.size + json_len]
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BridgeProtocolError(f"the guest sent a frame that is not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise BridgeProtocolError("the guest sent a frame that is not a JSON object")
        kind = message.get("t")
        if kind not in GUEST_MESSAGE_TYPES:
            raise BridgeProtocolError(f"the guest sent an unknown message type {kind!r}")
        return message


def require(message: dict[str, JSON], key: str, kind: type[T]) -> T:
    """Return ``message[key]`` if it is a ``kind`` (bools are not ints), else end the session."""
    value = message.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BridgeProtocolError(
            f"the guest's {message.get('t')!r} message has an invalid {key!r}: {value!r:.200}"
        )
    return value


def decode_code_error(raw: JSON) -> CodeError | None:
    """Validate the ``error`` member of a result message."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BridgeProtocolError("the guest's result has an invalid 'error'")
    raw = {"t": "result", **raw}
    lineno = raw.get("lineno")
    if lineno is not None and (not isinstance(lineno, int) or isinstance(lineno, bool)):
        raise BridgeProtocolError("the guest's error has an invalid 'lineno'")
    return CodeError(
        type=require(raw, "type", str),
        message=require(raw, "message", str),
        traceback=require(raw, "traceback", str),
        lineno=lineno,
    )


def decode_result(message: dict[str, JSON], duration_s: float) -> ExecutionResult:
    """Validate a guest's cell result and build the :class:`ExecutionResult` it describes.

    ``duration_s`` is the host's own measure; the guest's (``guest_duration_s``, time spent in
    the cell itself) is kept in ``extra``, so start-up and transport overhead can be told apart.
    """
    submitted = message.get("submitted")
    if submitted is not None and not isinstance(submitted, dict):
        raise BridgeProtocolError("the guest's result has an invalid 'submitted'")
    value = message.get("value")
    if value is not None and not isinstance(value, str):
        raise BridgeProtocolError("the guest's result has an invalid 'value'")
    extra: dict[str, JSON] = {}
    guest_duration = message.get("guest_duration_s")
    if guest_duration is not None:
        if not isinstance(guest_duration, int | float) or isinstance(guest_duration, bool):
            raise BridgeProtocolError("the guest's result has an invalid 'guest_duration_s'")
        extra["guest_duration_s"] = guest_duration
    return ExecutionResult(
        stdout=require(message, "stdout", str),
        stderr=require(message, "stderr", str),
        value=value,
        error=decode_code_error(message.get("error")),
        submitted=submitted,
        stdout_chars=require(message, "stdout_chars", int),
        stderr_chars=require(message, "stderr_chars", int),
        truncated=require(message, "truncated", bool),
        timed_out=require(message, "timed_out", bool),
        duration_s=duration_s,
        extra=extra,
    )
