"""A GuestChannel over the stdin and stdout of a command exec'd in a Modal sandbox.

The guest speaks binary frames, so the command is exec'd with ``text=False`` (bytes, never
UTF-8 decoding) and the default ``bufsize=-1`` (raw chunks as they arrive, never split or
joined at newlines). Both output streams are drained by background tasks into queues, so a
cancelled ``receive()`` (a cell timeout) never cancels the SDK's stream mid-message.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import modal

__all__ = ["ModalChannel"]

_STDIN_WRITE_BYTES = 1 << 20
"""Bytes per stdin RPC. The SDK buffers at most 16 MiB per drain; one MiB keeps each gRPC
message far below any server's message cap while 100 MB still needs only 100 calls."""
_STDERR_TAIL = 4000
_QUEUE_CHUNKS = 64
_CLOSE_TIMEOUT_S = 10.0


class ModalChannel:
    """A :class:`~rlm_core.bridge.session.GuestChannel` to a Modal ``ContainerProcess``.

    Owns the sandbox and the client: closing terminates the sandbox and closes the client.
    """

    def __init__(
        self,
        *,
        client: modal.Client,
        sandbox: modal.Sandbox,
        process: modal.container_process.ContainerProcess[bytes],
    ) -> None:
        self.client = client
        self.sandbox = sandbox
        self.process = process
        self._stdout: asyncio.Queue[bytes | BaseException] = asyncio.Queue(_QUEUE_CHUNKS)
        self._stderr_tail = bytearray()
        self._stream_error: BaseException | None = None
        self._eof = False
        self._closed = False
        self._pumps = [
            asyncio.ensure_future(self._pump_stdout()),
            asyncio.ensure_future(self._pump_stderr()),
        ]

    @property
    def sandbox_id(self) -> str:
        """Modal's id of the sandbox, for logs and the Modal dashboard."""
        return str(self.sandbox.object_id)

    async def _pump_stdout(self) -> None:
        try:
            async for chunk in self.process.stdout:
                if chunk:
                    await self._stdout.put(bytes(chunk))
        except asyncio.CancelledError:
            raise
        except (
            BaseException
        ) as exc:  # handed to receive(), which the session turns into SessionLostError
            await self._stdout.put(exc)
            return
        await self._stdout.put(b"")

    async def _pump_stderr(self) -> None:
        # Stderr only explains crashes (the guest captures user code's fd 2), so keep a tail.
        with contextlib.suppress(Exception):
            async for chunk in self.process.stderr:
                self._stderr_tail += chunk
                del self._stderr_tail[:-_STDERR_TAIL]

    async def send(self, data: bytes | memoryview) -> None:
        """Write ``data`` to the guest's stdin, one stdin RPC per MiB."""
        view = memoryview(data)
        stdin = self.process.stdin
        for offset in range(0, len(view), _STDIN_WRITE_BYTES):
            stdin.write(view[offset : offset + _STDIN_WRITE_BYTES])
            await stdin.drain.aio()

    async def receive(self) -> bytes:
        """Return the next chunk of the guest's stdout; ``b""`` at end of stream.

        Raises:
            modal.exception.Error: The stream failed (the sandbox is gone); the session turns
                this into SessionLostError with the SDK's error as the cause.
        """
        if self._eof:
            return b""
        item = await self._stdout.get()
        if isinstance(item, BaseException):
            self._eof = True
            self._stream_error = item
            raise item
        if not item:
            self._eof = True
        return item

    async def aclose(self) -> None:
        """Terminate the sandbox and close the client; idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await terminate_quietly(self.sandbox, self.client)

    def diagnostics(self) -> str:
        """The sandbox id, the stream error if any, and the tail of the guest's stderr."""
        parts = [f"Modal sandbox {self.sandbox_id}"]
        if self._stream_error is not None:
            parts.append(f"stream error: {type(self._stream_error).__name__}: {self._stream_error}")
        tail = self._stderr_tail.decode("utf-8", "replace").strip()
        if tail:
            parts.append(f"stderr: {tail}")
        return "; ".join(parts)


async def terminate_quietly(sandbox: Any, client: Any) -> None:
    """Terminate a sandbox (if any), then close a client; bounded in time, never raises.

    A sandbox left running bills until its own ``timeout``, so the work is shielded: if the
    caller is cancelled, it still finishes in the background.
    """

    async def terminate_then_close() -> None:
        if sandbox is not None:
            with contextlib.suppress(Exception):
                await sandbox.terminate.aio()
            with contextlib.suppress(Exception):
                await sandbox.detach.aio()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close.aio()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(terminate_then_close()), _CLOSE_TIMEOUT_S)
