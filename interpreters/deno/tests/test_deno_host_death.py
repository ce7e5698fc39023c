"""A Deno runner dies with its host process, even when the host is SIGKILLed mid-cell."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rlm_conformance.processes import descendants, running, wait_until

HOST = """
import anyio
from rlm_deno import DenoInterpreter

async def main():
    interp = DenoInterpreter()
    await interp.start()
    print("started", flush=True)
    await interp.execute("while True: pass", timeout=300)

anyio.run(main)
"""


def test_runner_dies_with_a_sigkilled_host(tmp_path: Path) -> None:
    script = tmp_path / "host.py"
    script.write_text(HOST)
    host = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        assert host.stdout.readline().strip() == "started"
        time.sleep(0.5)  # the cell is now spinning in the runner
        below = descendants(host.pid)
        assert below, "the host should have a Deno runner below it"
        host.kill()
        host.wait(10)
    finally:
        if host.poll() is None:
            host.kill()
        host.wait(10)
        if host.stdout is not None:
            host.stdout.close()
    wait_until(lambda: not any(running(pid) for pid in below), 10)
    left = [pid for pid in below if running(pid)]
    for pid in left:  # leave nothing behind on this machine, then report
        os.kill(pid, 9)
    assert left == [], "the Deno runner outlived its SIGKILLed host"
