"""Processes: nothing a guest starts outlives ``aclose()``, and no host process is reachable.

If this group fails, look at how the backend stops its guest: killing only the guest's process
group misses a double-forked ``setsid`` daemon (run the guest in its own PID namespace, under
a subreaper, or in a container that is removed). For the host-process probes, the guest sees
the host's processes: give it its own PID namespace and drop its capabilities, or declare
``host_env_visible=True`` so the prompt says the environment is not private.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from rlm_conformance._base import ConformanceBase, StartInterpreter
from rlm_conformance._requires import requires

_SPAWN = """
import os, signal, time

LOCK, READY = {lock!r}, {ready!r}


def hold():
    # Ignore polite signals, hold a shared lock on the host's file, report, and wait.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    import fcntl
    fd = os.open(LOCK, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    ready = os.open(READY, os.O_WRONLY | os.O_APPEND)
    os.write(ready, b"x")
    while True:
        time.sleep(1)


def spawn(daemon=False, levels=0, width=0):
    pid = os.fork()
    if pid:
        if daemon:
            os.waitpid(pid, 0)  # the middle process exits at once: the daemon is orphaned
        return
    try:
        if daemon:
            os.setsid()
            if os.fork():
                os._exit(0)
        for _ in range(width if levels else 0):
            spawn(levels=levels - 1, width=width)
        hold()
    finally:
        os._exit(0)


spawn()                       # a plain child
spawn(daemon=True)            # a double-forked daemon in its own session
spawn(levels=2, width=3)      # a small, bounded fork tree: 1 + 3 + 9 processes
expected = 1 + 1 + 13
deadline = time.time() + 20
while os.path.getsize(READY) < expected and time.time() < deadline:
    time.sleep(0.05)
os.path.getsize(READY)
"""

_EXPECTED_HOLDERS = 15


def _lock_is_free(lock: Path) -> bool:
    with open(lock, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def _kill_holders(lock: Path) -> None:
    """SIGKILL every process this host can see that has ``lock`` open."""
    target = str(lock.resolve())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    os.kill(int(pid), signal.SIGKILL)
                    break
            except OSError:
                continue


def _lock_freed_within(lock: Path, seconds: float) -> bool:
    """Poll: the kernel gives no event for the death of processes that are not our children."""
    deadline = time.monotonic() + seconds
    while not _lock_is_free(lock):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


_PROBE_HOST = """
import os

NEEDLE = {reversed_secret!r}[::-1].encode()
BUDGET = 256 << 20
hits = []


def scan_memory(pid):
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        budget = BUDGET
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("rw") or budget <= 0:
                continue
            low, high = (int(x, 16) for x in fields[0].split("-"))
            tail = b""
            for start in range(low, high, 1 << 22):
                try:
                    mem.seek(start)
                    chunk = mem.read(min(1 << 22, high - start))
                except (OSError, OverflowError, ValueError):
                    break
                budget -= len(chunk)
                if NEEDLE in tail + chunk:
                    return True
                tail = chunk[-len(NEEDLE):]
    return False


try:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
except OSError:
    pids = []
pids = [p for p in pids if p != os.getpid()]
for pid in pids:
    try:
        with open("/proc/%d/environ" % pid, "rb") as handle:
            if NEEDLE in handle.read():
                hits.append("environ of %d" % pid)
    except OSError:
        pass
# Memory and ptrace only of the parent (the host, for a plain child process): attaching to
# every process on a shared machine would stop other people's programs.
parent = os.getppid()
try:
    if parent > 1 and scan_memory(parent):
        hits.append("mem of %d" % parent)
except OSError:
    pass
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for pid in [parent] if parent > 1 else []:
        if libc.ptrace(16, pid, 0, 0) != 0:  # PTRACE_ATTACH
            continue
        try:
            os.waitpid(pid, 0x40000000)  # __WALL: wait for the attach stop
            found = scan_memory(pid)
        except OSError:
            found = False
        finally:
            libc.ptrace(17, pid, 0, 0)  # PTRACE_DETACH
        if found:
            hits.append("ptrace of %d" % pid)
except Exception:
    pass
hits
"""


@contextmanager
def _host_process_with(secret: str) -> Iterator[None]:
    """A host process with ``secret`` in its initial environment and memory, for the probes."""
    env = {**os.environ, "RLM_CONFORMANCE_PROCESS_SECRET": secret}
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, env=env
    )
    try:
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)


class ProcessTests(ConformanceBase):
    """Processes the guest starts, and the host processes it might reach."""

    @requires(isolation_at_least="process", host_files_visible=True)
    async def test_nothing_the_guest_started_outlives_close(
        self, start_interpreter: StartInterpreter, tmp_path: Path
    ) -> None:
        """After ``aclose()`` no process the guest started is alive.

        The guest starts a plain child, a double-forked ``setsid`` daemon and a bounded fork
        tree, all ignoring SIGTERM/SIGHUP/SIGINT and holding a shared lock on a host file; the
        host must be able to take the lock exclusively soon after closing.
        """
        lock, ready = tmp_path / "alive.lock", tmp_path / "ready"
        lock.write_bytes(b"")
        ready.write_bytes(b"")
        interp = await start_interpreter()
        code = _SPAWN.format(lock=str(lock), ready=str(ready))
        assert await self.value(interp, code) == str(_EXPECTED_HOLDERS)
        assert not _lock_is_free(lock), "the guest's processes should hold the lock now"
        await interp.aclose()
        freed = await anyio.to_thread.run_sync(_lock_freed_within, lock, 10.0)
        if not freed:
            _kill_holders(lock)  # leave no stray process on this machine, then report
        assert freed, "processes the guest started are still alive after aclose()"

    @requires(host_env_visible=False, isolation_at_least="process")
    async def test_host_secret_is_unreachable_through_host_processes(
        self,
        start_interpreter: StartInterpreter,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A secret in the host's environment cannot be read through any visible process.

        The guest reads ``/proc/<pid>/environ`` of every process it sees, scans its parent's
        ``/proc/<ppid>/mem`` and ``PTRACE_ATTACH``es to it, looking for a secret that the host
        test process and a host helper process hold in their environments.
        """
        secret = "rlm-process-secret-" + secrets.token_hex(8)
        monkeypatch.setenv("RLM_CONFORMANCE_PROCESS_SECRET", secret)
        with _host_process_with(secret):
            interp = await start_interpreter()
            code = _PROBE_HOST.format(reversed_secret=secret[::-1])
            hits = await self.value(interp, code)
        assert hits == "[]", f"the guest read the host's secret through: {hits}"
