"""A GuestChannel over a Deno child process that is not tied to any event loop.

The warm pool starts runner processes from plain threads and hands them to interpreters
used on other event loops (a fresh one per test, per ``asyncio.run``), so the channel uses
``subprocess.Popen`` with non-blocking pipes and waits on them with ``anyio.wait_readable`` /
``wait_writable`` from whichever loop is current. A watchdog thread enforces the optional
memory limit on the whole process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import IO

import anyio

from rlm_core.bridge.process import Tether
from rlm_core.errors import InterpreterUnavailableError

__all__ = ["DenoProcess", "PipePair"]

_STDERR_TAIL = 4000
# A pipe holds 64 KiB; a larger read only allocates more per call (~17 us for 1 MiB).
_READ_SIZE = 1 << 16


class PipePair:
    """Non-blocking writes to one file descriptor and reads from another, from any event loop."""

    _in: int
    _out: int
    _closed: bool

    def send_now(self, data: bytes) -> None:
        """Write ``data`` from any thread, blocking until it is all in the pipe."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._in, view) :]
            except BlockingIOError:
                time.sleep(0.001)

    async def send(self, data: bytes | memoryview) -> None:
        """Write all of ``data`` to the guest's input."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._in, view)
            except BlockingIOError:
                if not await self._wait(self._in, readable=False):
                    raise BrokenPipeError("the guest has ended") from None
                continue
            view = view[written:]

    async def receive(self) -> bytes:
        """Read what the guest wrote; ``b""`` once it ended or was closed."""
        while not self._closed:
            try:
                return os.read(self._out, _READ_SIZE)
            except BlockingIOError:
                if not await self._wait(self._out, readable=True):
                    return b""
            except OSError:
                return b""
        return b""

    async def _wait(self, fd: int, *, readable: bool) -> bool:
        """Wait until ``fd`` is ready; False if the guest is known to have ended meanwhile."""
        await (anyio.wait_readable(fd) if readable else anyio.wait_writable(fd))
        return True


class DenoProcess(PipePair):
    """A running ``deno run runner.mjs`` and its stdin/stdout (a GuestChannel)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        rss_limit_bytes: int | None = None,
    ) -> None:
        # Lives as long as the process: closed in close_now(), after its tail is kept.
        self._stderr = tempfile.TemporaryFile(prefix="rlm-deno-stderr-")  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            self._stderr.close()
            raise InterpreterUnavailableError(f"cannot run {argv[0]!r}: {exc}") from exc
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._in = self._process.stdin.fileno()
        self._out = self._process.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._closed = False
        self._stderr_tail = ""
        # The runner dies with this host process even when it is SIGKILLed (no cleanup runs).
        tether = Tether(self._process.pid)
        # A runner dropped without close (an unclosed pool, an interrupted start) is still
        # stopped and its files released when it is collected, not left running or leaking.
        self._release = weakref.finalize(self, _release, self._process, self._stderr, tether)
        self._killed_for: str | None = None
        self.started_at = time.monotonic()
        if rss_limit_bytes is not None:
            threading.Thread(
                target=self._watch_memory, args=(rss_limit_bytes,), daemon=True
            ).start()

    @property
    def pid(self) -> int:
        """The runner's process id (also its process group id)."""
        return self._process.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return not self._closed and self._process.poll() is None

    def kill(self) -> None:
        """Kill the runner's process group at once; safe from any thread, idempotent."""
        if self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()

    def close_now(self) -> None:
        """Stop the process and release its pipes (blocking, for threads and atexit)."""
        if self._closed:
            return
        self._closed = True
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)
        self._stderr_tail = self._read_stderr_tail()
        self._release()

    async def aclose(self) -> None:
        """Kill the runner and reap it; idempotent, never raises."""
        if self._closed:
            return
        with anyio.CancelScope(shield=True):
            self.kill()
            # SIGKILL of the whole group: reaping takes milliseconds, a thread waits for it.
            await anyio.to_thread.run_sync(self.close_now)

    def diagnostics(self) -> str:
        """Why the runner ended: exit status, the memory watchdog's verdict, stderr's tail."""
        parts = []
        if self._killed_for:
            parts.append(self._killed_for)
        code = self._process.poll()
        if code is not None:
            parts.append(f"signal {-code}" if code < 0 else f"exit code {code}")
        tail = self._stderr_tail if self._stderr.closed else self._read_stderr_tail()
        if tail:
            parts.append(f"stderr: {tail}")
        return "; ".join(parts)

    def _read_stderr_tail(self) -> str:
        try:
            size = os.fstat(self._stderr.fileno()).st_size
            self._stderr.seek(max(0, size - _STDERR_TAIL))
            return self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def _watch_memory(self, limit: int) -> None:
        status = f"/proc/{self._process.pid}/status"
        while self._process.poll() is None and not self._closed:
            try:
                with open(status) as handle:
                    for line in handle:
                        if line.startswith("VmRSS:"):
                            rss = int(line.split()[1]) * 1024
                            break
                    else:
                        rss = 0
            except (OSError, ValueError):
                return
            if rss > limit:
                self._killed_for = (
                    f"killed: the sandbox used {rss / 2**20:,.0f} MiB, over its memory limit of "
                    f"{limit / 2**20:,.0f} MiB"
                )
                self.kill()
                return
            time.sleep(0.05)


def _release(process: subprocess.Popen[bytes], stderr: IO[bytes], tether: Tether) -> None:
    """Kill the runner's process group, reap it, and close its pipes and stderr file."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    tether.release()
    for stream in (process.stdin, process.stdout, stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
