"""Confinement of subprocess guests, in both modes: a PID namespace, and the subreaper fallback.

The fallback (used where the kernel allows no namespaces) is forced here with
``RLM_CONFINE_NO_NAMESPACES``; in both modes a double-forked daemon dies at ``aclose()`` and
when the supervisor is told to stop (SIGTERM) while the guest is busy.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

import anyio
import pytest

from rlm_core.bridge.process import confined_argv
from rlm_subprocess import SubprocessInterpreter

pytestmark = pytest.mark.anyio

DAEMON = """
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        sleeper = "import signal, time\\n"
        sleeper += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        sleeper += "signal.signal(signal.SIGHUP, signal.SIG_IGN)\\n"
        sleeper += "time.sleep(600)"
        os.execv(sys.executable, [sys.executable, "-c", sleeper, {marker!r}])
    os._exit(0)
"""


def _daemons(marker: str) -> list[int]:
    """Host pids of running processes with ``marker`` on their command line."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if marker.encode() not in handle.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        if stat[stat.rindex(b")") + 2 :].split()[0] != b"Z":
            found.append(int(entry))
    return found


def _survivors(marker: str, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _daemons(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize("mode", ["namespaces", "subreaper"])
async def test_a_setsid_daemon_dies_at_close(mode: str) -> None:
    env = {"RLM_CONFINE_NO_NAMESPACES": "1"} if mode == "subreaper" else {}
    interp = SubprocessInterpreter(env=env)
    await interp.start()
    pid_ns = await interp.execute("import os\nos.readlink('/proc/self/ns/pid')")
    host_ns = os.readlink("/proc/self/ns/pid")
    assert (pid_ns.value != repr(host_ns)) == (mode == "namespaces")
    marker = f"rlm-daemon-{secrets.token_hex(6)}"
    result = await interp.execute(DAEMON.format(marker=marker), timeout=30)
    assert result.error is None, result.error
    assert await anyio.to_thread.run_sync(_wait_for, marker), "the daemon never started"
    await interp.aclose()
    left = await anyio.to_thread.run_sync(_survivors, marker, 10.0)
    for pid in left:  # leave nothing behind on this machine, then report
        os.kill(pid, 9)
    assert left == [], f"the daemon outlived aclose() in {mode} mode"


def _wait_for(marker: str) -> bool:
    deadline = time.monotonic() + 10
    while not _daemons(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("mode", ["namespaces", "subreaper"])
def test_sigterm_to_a_busy_confined_guest_kills_its_daemon(mode: str) -> None:
    """The path ``aclose()`` takes when the guest is too busy to obey the shutdown frame."""
    marker = f"rlm-daemon-{secrets.token_hex(6)}"
    busy = DAEMON.format(marker=marker) + "\nwhile True:\n    pass\n"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if mode == "subreaper":
        env["RLM_CONFINE_NO_NAMESPACES"] = "1"
    launcher = subprocess.Popen(
        confined_argv([sys.executable, "-I", "-c", busy]), env=env, start_new_session=True
    )
    try:
        assert _wait_for(marker), "the daemon never started"
        launcher.terminate()
        launcher.wait(10)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(10)
    left = _survivors(marker, 10.0)
    for pid in left:
        os.kill(pid, 9)
    assert left == [], f"the daemon outlived SIGTERM to its supervisor in {mode} mode"
