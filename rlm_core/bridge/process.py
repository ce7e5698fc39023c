"""A GuestChannel over a local child process's stdin and stdout.

Used by backends whose sandbox is a local command (``python3``, ``deno``, ``bwrap``, ``docker
run -i``). The child gets its own process group so that closing kills everything it spawned,
and its stderr goes to a temporary file whose tail explains a crash.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import IO

import anyio
from anyio.abc import Process

from rlm_core.errors import InterpreterUnavailableError
from rlm_core.interpreter import Capabilities

__all__ = ["LOCAL_PROCESS_CAPABILITIES", "ProcessChannel", "open_process_channel"]

LOCAL_PROCESS_CAPABILITIES = Capabilities(
    isolation="process",
    network=True,
    writable_filesystem=True,
    survives_timeout=True,
    max_variable_bytes=None,
    host_env_visible=False,
    host_files_visible=True,
)
"""What a guest in a local child process with a clean environment truly gets: its own memory
and environment, but the host's files and network (the subprocess backend, test stand-ins)."""

_STDERR_TAIL = 4000


class ProcessChannel:
    """A :class:`~rlm_core.bridge.session.GuestChannel` backed by a child process."""

    def __init__(self, process: Process, stderr_file: IO[bytes]):
        self._process = process
        self._stderr = stderr_file
        self._closed = False
        self._final_diagnostics: str | None = None

    @property
    def pid(self) -> int:
        """The child's process id (also its process group id)."""
        return self._process.pid

    async def send(self, data: bytes | memoryview) -> None:
        """Write to the child's stdin."""
        assert self._process.stdin is not None
        await self._process.stdin.send(bytes(data) if isinstance(data, memoryview) else data)

    async def receive(self) -> bytes:
        """Read from the child's stdout; ``b""`` at end of stream."""
        assert self._process.stdout is not None
        try:
            return await self._process.stdout.receive(1 << 20)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return b""

    async def aclose(self) -> None:
        """Kill the child's whole process group and reap it; idempotent."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            if self._process.returncode is None:
                try:
                    os.killpg(self._process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    self._process.kill()
            with anyio.move_on_after(5):
                await self._process.wait()
            # Grandchildren in another session (bwrap --new-session) may hold stdout a moment
            # longer; drain it so the pipe closes instead of leaking.
            with anyio.move_on_after(2):
                while await self.receive():
                    pass
            transport = getattr(getattr(self._process, "_process", None), "_transport", None)
            if transport is not None:  # asyncio keeps the pipes' transport until told
                transport.close()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    with contextlib.suppress(Exception):  # a dead pipe may refuse to close
                        await stream.aclose()
        # Keep what diagnostics() would say, then release the stderr file (else it leaks).
        self._final_diagnostics = self._read_diagnostics()
        self._stderr.close()

    def diagnostics(self) -> str:
        """Exit status and the tail of stderr."""
        if self._final_diagnostics is not None:
            return self._final_diagnostics
        return self._read_diagnostics()

    def _read_diagnostics(self) -> str:
        code = self._process.returncode
        parts = []
        if code is not None:
            parts.append(f"signal {-code}" if code < 0 else f"exit code {code}")
        try:
            size = os.fstat(self._stderr.fileno()).st_size
            self._stderr.seek(max(0, size - _STDERR_TAIL))
            tail = self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            tail = ""
        if tail:
            parts.append(f"stderr: {tail}")
        return "; ".join(parts)


async def open_process_channel(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    install_hint: str = "",
) -> ProcessChannel:
    """Start ``argv`` as a child with piped stdio in a new process group.

    Raises:
        InterpreterUnavailableError: The program does not exist or cannot be executed.
    """
    stderr_file = tempfile.TemporaryFile(prefix="rlm-guest-stderr-")  # noqa: SIM115 - owned by the channel
    try:
        process = await anyio.open_process(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError) as exc:
        stderr_file.close()
        hint = f" {install_hint}" if install_hint else ""
        raise InterpreterUnavailableError(f"cannot run {argv[0]!r}: {exc}.{hint}") from exc
    return ProcessChannel(process, stderr_file)
