"""SIGTERM and a dying host leave nothing: real host processes, real guests, real signals.

``rlm exec`` stopped by SIGTERM or SIGHUP closes its sandbox and exits with 128 + the signal,
like Ctrl-C (130). A library user's process that is SIGKILLed (no chance to clean up) takes its
guests with it, daemons the guest started included.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlm_conformance.processes import descendants, guest_processes, running, wait_until


def stop_cli_with(signum: int, tmp_path: Path) -> tuple[int, str, list[int]]:
    """Start ``rlm exec`` on a busy cell, send ``signum`` once the guest runs."""
    marker = tmp_path / "started"
    code = f"open({str(marker)!r}, 'w').close()\nwhile True:\n    pass"
    cli = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from rlm_core.cli import main; sys.exit(main())",
            "exec",
            "--interpreter",
            "subprocess",
            "--timeout",
            "300",
            code,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(marker.exists, 60), "the guest never started"
        guests = guest_processes(cli.pid)
        assert guests
        cli.send_signal(signum)
        _, stderr = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
    return cli.returncode, stderr, guests


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_rlm_exec_stopped_by_a_signal_closes_its_sandbox(
    signum: signal.Signals, tmp_path: Path
) -> None:
    code, stderr, guests = stop_cli_with(signum, tmp_path)
    assert code == 128 + signum, stderr
    assert f"interrupted ({signum.name})" in stderr
    # Closed by the CLI itself, before it exited: nothing is left running.
    assert [pid for pid in guests if running(pid)] == []


HOST = """
import os, sys, time, anyio
from rlm_subprocess import SubprocessInterpreter

DAEMON = '''
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.close(1); os.close(2)
        open({ready!r}, "w").write(str(os.getpid()))
        while True:
            time.sleep(1)
    os._exit(0)
time.sleep(0.2)
'''

async def main():
    interp = SubprocessInterpreter()
    await interp.start()
    await interp.execute(DAEMON, timeout=30)
    await interp.execute("while True: pass", timeout=300)

anyio.run(main)
"""


def test_a_killed_library_host_takes_its_guests_and_their_daemons_with_it(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "daemon-ready"
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent(HOST).replace("{ready!r}", repr(str(ready))))
    host = subprocess.Popen([sys.executable, str(script)])
    try:
        assert wait_until(ready.exists, 60), "the daemon never started"
        assert wait_until(lambda: len(guest_processes(host.pid)) >= 2, 10)
        below = descendants(host.pid)
        assert below
        host.kill()  # SIGKILL: the host gets no chance to close anything
        host.wait(10)
    finally:
        if host.poll() is None:
            host.kill()
    wait_until(lambda: not any(running(pid) for pid in below), 10)
    left = [pid for pid in below if running(pid)]
    # The daemon re-parented to the guest's init (or subreaper), so it was among them.
    assert left == [], "processes outlived their SIGKILLed host"
