"""A GuestChannel over a container's attach socket: stdin in, a multiplexed stdout/stderr out.

Without a TTY the engine wraps everything the container writes in frames of an 8-byte header
(stream id, three zero bytes, big-endian payload length) followed by the payload; frames do
not follow line or message boundaries. The socket is used non-blocking, so neither reading nor
writing ever blocks the event loop and a cancelled read loses no bytes.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable

import anyio

from rlm_core.errors import BridgeProtocolError

__all__ = ["AttachChannel", "StreamDemuxer"]

_STDERR_TAIL = 8192
# Larger buffers cost more than they save: recv() allocates the whole size each call (~20 us
# for 1 MiB against ~3 us for 64 KiB), and a tool call's reply is a few dozen bytes.
_RECV_BYTES = 1 << 16
_SEND_BUFFER = 4 << 20
_STDIN, _STDOUT, _STDERR = 0, 1, 2


class StreamDemuxer:
    """Splits the engine's multiplexed attach stream into stdout bytes and a stderr tail."""

    def __init__(self) -> None:
        self._header = bytearray()
        self._stream = _STDOUT
        self._left = 0
        self.stderr_tail = bytearray()

    @property
    def at_frame_boundary(self) -> bool:
        """Whether the bytes fed so far end exactly at the end of a frame."""
        return self._left == 0 and not self._header

    def feed(self, data: bytes) -> bytes:
        """Consume ``data``; return the stdout payload bytes it completed or continued.

        Raises:
            BridgeProtocolError: A frame header is malformed (the engine is not speaking the
                attach protocol, for example because the container has a TTY).
        """
        view = memoryview(data)
        out: list[memoryview] = []
        pos = 0
        while pos < len(view):
            if self._left == 0:
                need = 8 - len(self._header)
                self._header += view[pos : pos + need]
                pos += min(need, len(view) - pos)
                if len(self._header) < 8:
                    break
                stream, pad, size = self._header[0], self._header[1:4], self._header[4:8]
                if stream not in (_STDIN, _STDOUT, _STDERR) or any(pad):
                    raise BridgeProtocolError(
                        f"the engine's attach stream has a malformed frame header "
                        f"{bytes(self._header)!r}; is the container running with a TTY?"
                    )
                self._stream = stream
                self._left = int.from_bytes(size, "big")
                self._header.clear()
                continue
            chunk = view[pos : pos + self._left]
            pos += len(chunk)
            self._left -= len(chunk)
            if self._stream == _STDERR:
                self.stderr_tail += chunk
                del self.stderr_tail[:-_STDERR_TAIL]
            else:
                out.append(chunk)
        if len(out) == 1:
            return bytes(out[0])
        return b"".join(out)


class AttachChannel:
    """A :class:`~rlm_core.bridge.session.GuestChannel` over a container's attach socket.

    Args:
        sock: The connected socket (plain or TLS) the engine hijacked for the attach.
        keep_alive: Objects that own ``sock`` in the SDK (its HTTP response); closed last.
        on_close: Called once, shielded, after the socket is closed: stops and removes the
            container and returns what is known about how it ended.
    """

    def __init__(
        self,
        sock: socket.socket,
        keep_alive: list[object],
        on_close: Callable[[], Awaitable[str]],
    ) -> None:
        self._sock = sock
        self._keep_alive = keep_alive
        self._on_close = on_close
        self._demux = StreamDemuxer()
        self._eof = False
        self._closed = False
        self._ending = ""
        sock.setblocking(False)
        # A larger send buffer halves the wake-ups per gigabyte when a big variable streams in.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)

    async def send(self, data: bytes | memoryview) -> None:
        """Write all of ``data`` to the container's stdin without copying it."""
        view = memoryview(data).cast("B")
        while view:
            try:
                sent = self._sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError):
                await anyio.wait_writable(self._sock)
                continue
            except ssl.SSLWantReadError:
                await anyio.wait_readable(self._sock)
                continue
            view = view[sent:]

    async def receive(self) -> bytes:
        """Return the next stdout bytes the guest wrote; ``b""`` at end of stream."""
        while not self._eof:
            try:
                data = self._sock.recv(_RECV_BYTES)
            except (BlockingIOError, ssl.SSLWantReadError):
                await anyio.wait_readable(self._sock)
                continue
            except ssl.SSLWantWriteError:
                await anyio.wait_writable(self._sock)
                continue
            except OSError:
                data = b""
            if not data:
                self._eof = True
                break
            out = self._demux.feed(data)
            if out:
                return out
        return b""

    async def aclose(self) -> None:
        """Close the attach socket, then stop and remove the container; idempotent."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            for closeable in (self._sock, *self._keep_alive):
                close = getattr(closeable, "close", None)
                if callable(close):
                    # A half-dead socket may refuse to close cleanly; its fd goes anyway.
                    with contextlib.suppress(Exception):
                        close()
            try:
                self._ending = await self._on_close()
            except Exception as exc:  # closing never raises; say what went wrong instead
                self._ending = f"removing the container failed: {exc}"

    def diagnostics(self) -> str:
        """How the container ended (when closed) and the tail of the guest's stderr."""
        parts = [self._ending] if self._ending else []
        tail = self._demux.stderr_tail.decode("utf-8", "replace").strip()
        if tail:
            parts.append(f"stderr: {tail[-4000:]}")
        return "; ".join(parts)
