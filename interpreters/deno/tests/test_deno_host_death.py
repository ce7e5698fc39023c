"""A Deno runner dies with its host process, even when the host is SIGKILLed mid-cell."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    stat = handle.read()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 :].split()[0] != b"Z"


def test_runner_dies_with_a_sigkilled_host(tmp_path: Path) -> None:
    script = tmp_path / "host.py"
    script.write_text(HOST)
    host = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        assert host.stdout.readline().strip() == "started"
        time.sleep(0.5)  # the cell is now spinning in the runner
        below = _descendants(host.pid)
        assert below, "the host should have a Deno runner below it"
        host.kill()
        host.wait(10)
    finally:
        if host.poll() is None:
            host.kill()
        host.wait(10)
        if host.stdout is not None:
            host.stdout.close()
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in below if _running(pid)]
    for pid in left:  # leave nothing behind on this machine, then report
        os.kill(pid, 9)
    assert left == [], "the Deno runner outlived its SIGKILLed host"
