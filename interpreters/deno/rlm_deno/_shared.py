"""Sessions sharing one Deno process: each a Pyodide worker on its own pair of named pipes.

A Deno process with one Pyodide session holds ~107 MB; each further session in the same
process adds ~65 MB, because the runtime and the compiled WebAssembly module are shared. With
``DenoInterpreter(sessions_per_process=N)`` up to N live sessions share a process (runner.mjs
in shared mode): the host sends it ``open``/``close`` lines on stdin and it reports a session
whose worker stopped by itself. Each session's frames travel on two FIFOs in a private
directory, so the bridge's byte stream is the same as with a process of its own.

Sessions in one process are isolated from each other by WebAssembly and the locked-down
worker (no ``Deno`` namespace, no permission beyond the pipe directory), not by the kernel.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import anyio

from rlm_core.errors import InterpreterUnavailableError
from rlm_deno._channel import DenoProcess, PipePair

__all__ = ["SharedHost", "SharedSession"]

_POLL_S = 0.25
"""How often a blocked read or write checks whether its session has ended meanwhile."""
_LIFETIME_FACTOR = 8
"""A process takes this many times its capacity in sessions, then a fresh one takes over."""


class SharedSession(PipePair):
    """One session's pipes to a worker in a shared Deno process (a GuestChannel)."""

    def __init__(self, host: SharedHost, session_id: int, directory: Path) -> None:
        self._host = host
        self.session_id = session_id
        self._paths = (directory / f"{session_id}.in", directory / f"{session_id}.out")
        for path in self._paths:
            os.mkfifo(path, 0o600)
        # Both ends held open here (O_RDWR): opening never blocks, and the worker's opens
        # return at once whichever side comes first.
        self._in = os.open(self._paths[0], os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._out = os.open(self._paths[1], os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._closed = False
        self._ended: str | None = None  # why the worker stopped, once it has
        self.started_at = time.monotonic()
        self._release = weakref.finalize(self, _release, host, session_id, self._in, self._out)

    @property
    def pid(self) -> int:
        """The shared Deno process's id."""
        return self._host.process.pid

    @property
    def paths(self) -> tuple[str, str]:
        """The worker's input and output pipes."""
        return str(self._paths[0]), str(self._paths[1])

    def alive(self) -> bool:
        """Whether the session's worker is still running."""
        return not self._closed and self._ended is None and self._host.process.alive()

    def ended(self, reason: str) -> None:
        """Record that the worker stopped (called by the host's event reader)."""
        if self._ended is None:
            self._ended = reason or "the session's worker ended"

    def kill(self) -> None:
        """Stop the worker at once; safe from any thread, idempotent."""
        self.ended("stopped by the host")
        self._host.close_session(self.session_id)

    def close_now(self) -> None:
        """Stop the worker and release the pipes."""
        if self._closed:
            return
        self._closed = True
        self.kill()
        self._release()
        for path in self._paths:
            with contextlib.suppress(OSError):
                path.unlink()

    async def aclose(self) -> None:
        """Stop the worker and release the pipes; idempotent, never raises."""
        self.close_now()

    def diagnostics(self) -> str:
        """Why the session ended: the worker's reason, or what ended the shared process."""
        if self._ended and self._host.process.alive():
            return self._ended
        process = self._host.process.diagnostics()
        return f"the shared Deno process ended ({process})" if process else (self._ended or "")

    async def _wait(self, fd: int, *, readable: bool) -> bool:
        while self._ended is None and self._host.process.alive():
            with anyio.move_on_after(_POLL_S):
                await (anyio.wait_readable(fd) if readable else anyio.wait_writable(fd))
                return True
        return False


class SharedHost:
    """One runner process in shared mode and the sessions it holds."""

    def __init__(
        self, spawn: Callable[[Path], DenoProcess], capacity: int, directory: Path
    ) -> None:
        self.capacity = capacity
        self._directory = directory
        self.process = spawn(directory)
        self._lock = threading.Lock()
        self._sessions: dict[int, SharedSession] = {}
        self._ids = itertools.count(1)
        self._opened = 0
        self._closing = False
        threading.Thread(target=self._read_events, name="rlm-deno-shared", daemon=True).start()

    @classmethod
    def start(cls, spawn: Callable[[Path], DenoProcess], capacity: int) -> SharedHost:
        """A new shared process, with a private directory for its sessions' pipes."""
        directory = Path(tempfile.mkdtemp(prefix="rlm-deno-pipes-"))
        try:
            return cls(spawn, capacity, directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def open_session(self) -> SharedSession | None:
        """Start a worker for a new session; None if this process takes no more.

        It takes none when full, retired after its lifetime's share, closing or ended.
        """
        with self._lock:
            full = len(self._sessions) >= self.capacity
            retired = self._opened >= self.capacity * _LIFETIME_FACTOR
            if full or retired or self._closing or not self.process.alive():
                return None
            session = SharedSession(self, next(self._ids), self._directory)
            self._sessions[session.session_id] = session
            self._opened += 1
        source, sink = session.paths
        self._request({"op": "open", "id": session.session_id, "input": source, "output": sink})
        return session

    def close_session(self, session_id: int) -> None:
        """Stop a session's worker; the process ends with its last session."""
        with self._lock:
            if self._sessions.pop(session_id, None) is None:
                return
            self._closing = not self._sessions
        self._request({"op": "close", "id": session_id})
        if self._closing:
            self.close()

    def close(self) -> None:
        """Stop the process and every session in it."""
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.ended("the shared Deno process was closed")
        self.process.close_now()
        shutil.rmtree(self._directory, ignore_errors=True)

    def _request(self, request: dict[str, object]) -> None:
        with contextlib.suppress(OSError):  # a dead process: its reader marks every session
            self.process.send_now((json.dumps(request) + "\n").encode())

    def _read_events(self) -> None:
        pending = b""
        fd = self.process._out
        while self.process.alive():
            try:
                ready, _, _ = select.select([fd], [], [], 1.0)
                chunk = os.read(fd, 65536) if ready else None
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                break
            if chunk is None:
                continue
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._on_event(line)
        self._lost()

    def _on_event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
            session_id, reason = int(event["id"]), str(event.get("reason") or "")
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:  # it stays listed until closed: its close may end the process
            session = self._sessions.get(session_id)
        if session is not None:
            session.ended(reason)

    def _lost(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.ended("the shared Deno process ended")
        shutil.rmtree(self._directory, ignore_errors=True)


def _release(host: SharedHost, session_id: int, *fds: int) -> None:
    host.close_session(session_id)
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


_hosts: dict[object, SharedHost] = {}
_hosts_lock = threading.Lock()


def open_session(key: object, capacity: int, spawn: Callable[[Path], DenoProcess]) -> SharedSession:
    """A session in the accepting shared process for ``key``, starting one when needed."""
    with _hosts_lock:
        host = _hosts.get(key)
        session = host.open_session() if host is not None else None
        if session is None:
            fresh = _hosts[key] = SharedHost.start(spawn, capacity)
            session = fresh.open_session()
            if session is None:
                raise InterpreterUnavailableError(
                    f"a new shared Deno process ended at once: {fresh.process.diagnostics()}"
                )
        return session


def close_all() -> None:
    """Stop every shared process (at interpreter exit)."""
    with _hosts_lock:
        hosts = list(_hosts.values())
        _hosts.clear()
    for host in hosts:
        host.close()
