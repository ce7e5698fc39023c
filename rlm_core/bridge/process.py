"""A GuestChannel over a local child process's stdin and stdout, and how to confine that child.

Used by backends whose sandbox is a local command (``python3``, ``deno``, ``bwrap``, ``docker
run -i``). The child gets its own process group so that closing kills everything it spawned,
and its stderr goes to a temporary file whose tail explains a crash. :func:`confined_argv`
wraps a guest command in :mod:`rlm_core.bridge.confine`, and
:func:`local_process_capabilities` says what that confinement enforces on this machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import anyio
from anyio.abc import Process

from rlm_core.bridge import confine
from rlm_core.errors import InterpreterUnavailableError
from rlm_core.interpreter import Capabilities

__all__ = [
    "LOCAL_PROCESS_CAPABILITIES",
    "ProcessChannel",
    "Tether",
    "confined_argv",
    "local_process_capabilities",
    "open_process_channel",
]

LOCAL_PROCESS_CAPABILITIES = Capabilities(
    isolation="process",
    network=True,
    writable_filesystem=True,
    survives_timeout=True,
    max_variable_bytes=None,
    host_env_visible=True,
    host_files_visible=True,
)
"""What a guest in a plain local child process with a clean environment gets for sure: its own
memory, but the host's files and network, and the host's environment through ``/proc`` (the
host is a process of the same user). :func:`local_process_capabilities` may claim more."""

_CONFINE_SOURCE = Path(confine.__file__).read_text(encoding="utf-8")


def confined_argv(
    argv: Sequence[str], *, python: str | None = None, search_path: str | None = None
) -> list[str]:
    """``argv`` run under :mod:`rlm_core.bridge.confine` by ``python`` (default: this one).

    The guest then dies with its host, leaves no process behind when it ends or is closed,
    and, where the kernel allows namespaces, cannot see or touch any host process. On systems
    other than Linux ``argv`` is returned unchanged.

    Raises:
        FileNotFoundError: ``argv[0]`` is not an executable on ``search_path`` (default: this
            process's PATH), as starting it directly would.
    """
    if not sys.platform.startswith("linux"):
        return list(argv)
    if shutil.which(argv[0], path=search_path) is None:
        raise FileNotFoundError(errno.ENOENT, "no such executable", argv[0])
    return [python or sys.executable, "-I", "-c", _CONFINE_SOURCE, "--", *argv]


@functools.cache
def local_process_capabilities() -> Capabilities:
    """What a guest started with :func:`confined_argv` gets on this machine (probed once).

    With PID namespaces available the host's environment is out of the guest's reach;
    without them it is readable through ``/proc``, and the capabilities say so.
    """
    if not sys.platform.startswith("linux"):
        return LOCAL_PROCESS_CAPABILITIES
    try:
        probe = subprocess.run(
            [sys.executable, "-I", "-c", _CONFINE_SOURCE, "--probe"],
            capture_output=True,
            timeout=30,
            check=False,
            env={},
        )
        confined = bool(json.loads(probe.stdout.decode().strip().splitlines()[-1])["namespaces"])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, KeyError):
        confined = False
    return dataclasses.replace(LOCAL_PROCESS_CAPABILITIES, host_env_visible=not confined)


_STDERR_TAIL = 4000

# The tether's watcher: wait for end of input; a released tether says so first (one byte).
_TETHER_WATCHER = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
released = False
while True:
    data = os.read(0, 65536)
    if not data:
        break
    released = True
if not released:
    try:
        os.killpg(int(sys.argv[1]), signal.SIGKILL)
    except OSError:
        pass
"""


class Tether:
    """Kills a process group when this host process dies, whichever thread started it.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked a child ends, so it cannot tie a
    child started from a short-lived worker thread to the whole host. A tether is a tiny
    watcher process reading a pipe only this process can write to: the pipe ends when the host
    dies (however it dies), and the watcher then SIGKILLs the group. :meth:`release` disarms it.
    """

    def __init__(self, pgid: int) -> None:
        read_end, self._write_end = os.pipe()
        try:
            self._watcher = subprocess.Popen(
                [sys.executable, "-I", "-c", _TETHER_WATCHER, str(pgid)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal must not fire it early
            )
        finally:
            os.close(read_end)

    def release(self) -> None:
        """Disarm: the group was stopped on purpose. Idempotent."""
        if self._write_end < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self._write_end, b"r")
        os.close(self._write_end)
        self._write_end = -1
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._watcher.wait(timeout=5)


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
        """Stop the child and everything it started, and reap it; idempotent.

        SIGTERM first lets a confining supervisor kill processes that left the group; then
        the whole process group is killed.
        """
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            if self._process.returncode is None:
                # os.kill, not Process.terminate(): Popen would reap an exited child itself
                # and asyncio's watcher would then report exit code 255 instead of the real one.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._process.pid, signal.SIGTERM)  # a supervisor cleans up
                with anyio.move_on_after(1):
                    await self._process.wait()
            # Even when the child is gone, others may remain in its group (a group id is not
            # reused while any member lives).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
            if self._process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
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
